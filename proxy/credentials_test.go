package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/passhash"
)

// fakeClock is an injectable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// credEnv is a Credentials over a mutable account table with a fake hash:
// "hash:<password>" verifies <password>.
type credEnv struct {
	mu       sync.Mutex
	accounts map[string]string // login -> hash
	verifies atomic.Int32
	hashes   chan string // hashes verified, when set
	clock    *fakeClock
	sleeps   []time.Duration
	c        *Credentials
}

const dummyTestHash = "dummy-hash"

func newCredEnv(t *testing.T, opts CredentialOptions) *credEnv {
	t.Helper()
	e := &credEnv{
		accounts: map[string]string{"alice": "hash:secret", "bob": "hash:hunter2"},
		clock:    &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	lookup := func(login string) (Account, string, bool) {
		e.mu.Lock()
		defer e.mu.Unlock()
		h, ok := e.accounts[login]
		return Account{Login: login, Identity: login + "@contoso.com"}, h, ok
	}
	if opts.Verify == nil {
		opts.Verify = func(phc, password string) (bool, error) {
			e.verifies.Add(1)
			if e.hashes != nil {
				e.hashes <- phc
			}
			if phc == "malformed" {
				return false, passhash.ErrMalformed
			}
			return phc == "hash:"+password, nil
		}
	}
	opts.Now = e.clock.Now
	if opts.DummyHash == "" {
		opts.DummyHash = dummyTestHash
	}
	e.c = NewCredentials(lookup, opts)
	e.c.sleep = func(ctx context.Context, d time.Duration) bool {
		e.mu.Lock()
		e.sleeps = append(e.sleeps, d)
		e.mu.Unlock()
		return ctx.Err() == nil
	}
	return e
}

func (e *credEnv) setHash(login, h string) {
	e.mu.Lock()
	e.accounts[login] = h
	e.mu.Unlock()
}

var (
	addrA = netip.MustParseAddr("192.0.2.1")
	addrB = netip.MustParseAddr("192.0.2.2")
)

func (e *credEnv) auth(login, password string, from netip.Addr) error {
	_, err := e.c.Authenticate(context.Background(), login, password, from)
	return err
}

func TestCredentialsCheck(t *testing.T) {
	tests := []struct {
		name, login, password string
		wantErr               error
		wantHash              string // the hash verification ran against
	}{
		{"good", "alice", "secret", nil, "hash:secret"},
		{"wrong password", "alice", "guess", ErrBadCredentials, "hash:secret"},
		{"unknown login", "mallory", "secret", ErrBadCredentials, dummyTestHash},
		{"empty password", "alice", "", ErrBadCredentials, "hash:secret"},
		{"login is case-sensitive", "Alice", "secret", ErrBadCredentials, dummyTestHash},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newCredEnv(t, CredentialOptions{})
			e.hashes = make(chan string, 1)
			acct, err := e.c.Authenticate(context.Background(), tt.login, tt.password, addrA)
			if err != tt.wantErr {
				t.Fatalf("Authenticate = %+v, %v; want %v", acct, err, tt.wantErr)
			}
			if err == nil && acct.Identity != tt.login+"@contoso.com" {
				t.Errorf("account = %+v", acct)
			}
			if err != nil && acct != (Account{}) {
				t.Errorf("failure returned account %+v", acct)
			}
			// Known and unknown logins do the same work: one verification.
			if got := <-e.hashes; got != tt.wantHash || e.verifies.Load() != 1 {
				t.Errorf("verified against %q (%d times), want %q once", got, e.verifies.Load(), tt.wantHash)
			}
		})
	}
}

func TestCredentialsMalformedHash(t *testing.T) {
	e := newCredEnv(t, CredentialOptions{AddrLimit: 1})
	e.setHash("alice", "malformed")
	err := e.auth("alice", "secret", addrA)
	if err == nil || errors.Is(err, ErrBadCredentials) || !errors.Is(err, passhash.ErrMalformed) || !strings.Contains(err.Error(), "hash-password") {
		t.Fatalf("Authenticate = %v; want a configuration error with a hint", err)
	}
	// Not the client's fault: not counted as a failure.
	e.setHash("alice", "hash:secret")
	if err := e.auth("alice", "secret", addrA); err != nil {
		t.Errorf("after fixing the hash: %v", err)
	}
}

func TestCredentialsCache(t *testing.T) {
	e := newCredEnv(t, CredentialOptions{CacheTTL: time.Minute})
	steps := []struct {
		name         string
		do           func()
		password     string
		wantErr      error
		wantVerifies int32
	}{
		{"first login verifies", nil, "secret", nil, 1},
		{"second login is a cache hit", nil, "secret", nil, 1},
		{"wrong password is not a hit", nil, "guess", ErrBadCredentials, 2},
		{"right password still a hit", nil, "secret", nil, 2},
		{"after the TTL it verifies again", func() { e.clock.Advance(time.Minute) }, "secret", nil, 3},
		{"and is cached again", nil, "secret", nil, 3},
		{"a changed hash invalidates", func() { e.setHash("alice", "hash:newpass") }, "secret", ErrBadCredentials, 4},
		{"the new password verifies", nil, "newpass", nil, 5},
		{"and is cached", nil, "newpass", nil, 5},
		{"a removed account is refused", func() {
			e.mu.Lock()
			delete(e.accounts, "alice")
			e.mu.Unlock()
		}, "newpass", ErrBadCredentials, 6},
	}
	for _, s := range steps {
		if s.do != nil {
			s.do()
		}
		if err := e.auth("alice", s.password, addrA); err != s.wantErr {
			t.Fatalf("%s: err = %v, want %v", s.name, err, s.wantErr)
		}
		if got := e.verifies.Load(); got != s.wantVerifies {
			t.Fatalf("%s: %d verifications, want %d", s.name, got, s.wantVerifies)
		}
	}
}

func TestCredentialsCacheOff(t *testing.T) {
	e := newCredEnv(t, CredentialOptions{CacheTTL: -1})
	for range 3 {
		if err := e.auth("alice", "secret", addrA); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.verifies.Load(); n != 3 {
		t.Errorf("%d verifications without a cache, want 3", n)
	}
}

func TestCredentialsCacheBounded(t *testing.T) {
	e := newCredEnv(t, CredentialOptions{CacheSize: 2})
	for _, l := range []string{"u1", "u2", "u3", "u4"} {
		e.setHash(l, "hash:pw")
		if err := e.auth(l, "pw", addrA); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.c.cache.len(); n != 2 {
		t.Errorf("cache holds %d entries, want 2", n)
	}
	// The newest are kept.
	before := e.verifies.Load()
	e.auth("u4", "pw", addrA)
	e.auth("u1", "pw", addrA)
	if got := e.verifies.Load() - before; got != 1 {
		t.Errorf("%d verifications for a kept and an evicted entry, want 1", got)
	}
}

func TestCredentialsCacheKey(t *testing.T) {
	c := newVerifyCache(time.Minute, 10)
	base := c.key("alice", "secret", "hash")
	for _, k := range [][3]string{
		{"alice", "secret", "hash2"},
		{"alice", "secre", "thash"},
		{"alicesecret", "", "hash"},
		{"", "alicesecret", "hash"},
	} {
		if c.key(k[0], k[1], k[2]) == base {
			t.Errorf("key%q equals key(alice, secret, hash)", k)
		}
	}
	if c.key("alice", "secret", "hash") != base {
		t.Error("the key is not stable")
	}
	if newVerifyCache(time.Minute, 10).key("alice", "secret", "hash") == base {
		t.Error("two caches share a key: the HMAC key is not random")
	}
}

func TestCredentialsConcurrencyBound(t *testing.T) {
	const slots, logins = 2, 6
	release := make(chan struct{})
	entered := make(chan struct{}, logins)
	var running, peak atomic.Int32
	verify := func(phc, password string) (bool, error) {
		n := running.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		entered <- struct{}{}
		<-release
		running.Add(-1)
		return phc == "hash:"+password, nil
	}
	e := newCredEnv(t, CredentialOptions{MaxConcurrent: slots, Verify: verify, CacheTTL: -1})
	var wg sync.WaitGroup
	for i := range logins {
		// Different logins: the same login and password would share one
		// verification.
		login := fmt.Sprintf("user%d", i)
		e.setHash(login, "hash:secret")
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.auth(login, "secret", addrA)
		}()
	}
	for range slots {
		<-entered
	}
	// Both slots are taken: a login whose context ends while it waits gives
	// up with the context's error, not a verdict on the password.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := e.c.Authenticate(ctx, "alice", "secret", addrB)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrBadCredentials) {
		t.Errorf("waiting login = %v, want the context's error", err)
	}
	close(release)
	wg.Wait()
	if p := peak.Load(); p != slots {
		t.Errorf("peak concurrent verifications = %d, want %d", p, slots)
	}
}

func TestCredentialsThrottle(t *testing.T) {
	v6a := netip.MustParseAddr("2001:db8:1:2::1")
	v6sameNet := netip.MustParseAddr("2001:db8:1:2:ffff::9")
	v6otherNet := netip.MustParseAddr("2001:db8:1:3::1")
	mapped := netip.MustParseAddr("::ffff:192.0.2.1")
	type attempt struct {
		login, password string
		from            netip.Addr
		want            error
	}
	tests := []struct {
		name     string
		opts     CredentialOptions
		attempts []attempt
	}{
		{"per address", CredentialOptions{AddrLimit: 3, LoginLimit: -1}, []attempt{
			{"alice", "x", addrA, ErrBadCredentials},
			{"bob", "x", addrA, ErrBadCredentials},
			{"nobody", "x", addrA, ErrBadCredentials},
			{"alice", "secret", addrA, ErrThrottled}, // even the right password
			{"alice", "secret", mapped, ErrThrottled},
			{"alice", "secret", addrB, nil},
		}},
		{"per IPv6 /64", CredentialOptions{AddrLimit: 2, LoginLimit: -1}, []attempt{
			{"alice", "x", v6a, ErrBadCredentials},
			{"bob", "x", v6sameNet, ErrBadCredentials},
			{"alice", "secret", v6a, ErrThrottled},
			{"alice", "secret", v6otherNet, nil},
		}},
		{"success clears the address", CredentialOptions{AddrLimit: 2, LoginLimit: -1}, []attempt{
			{"alice", "x", addrA, ErrBadCredentials},
			{"alice", "secret", addrA, nil},
			{"alice", "x", addrA, ErrBadCredentials},
			{"alice", "x", addrA, ErrBadCredentials},
			{"alice", "secret", addrA, ErrThrottled},
		}},
		{"per login across addresses", CredentialOptions{AddrLimit: -1, LoginLimit: 2}, []attempt{
			{"alice", "x", addrA, ErrBadCredentials},
			{"ALICE", "x", addrB, ErrBadCredentials}, // counted for alice: case folded
			{"alice", "secret", netip.MustParseAddr("198.51.100.7"), ErrThrottled},
			{"bob", "hunter2", addrA, nil},
		}},
		{"a success does not clear the login", CredentialOptions{AddrLimit: -1, LoginLimit: 2}, []attempt{
			{"alice", "x", addrA, ErrBadCredentials},
			{"alice", "secret", addrB, nil},
			{"alice", "x", addrA, ErrBadCredentials},
			{"alice", "secret", addrB, ErrThrottled},
		}},
		{"unknown address is one bucket", CredentialOptions{AddrLimit: 1, LoginLimit: -1}, []attempt{
			{"alice", "x", netip.Addr{}, ErrBadCredentials},
			{"alice", "secret", netip.Addr{}, ErrThrottled},
			{"alice", "secret", addrA, nil},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.BaseDelay = -1
			tt.opts.CacheTTL = -1
			e := newCredEnv(t, tt.opts)
			for i, a := range tt.attempts {
				before := e.verifies.Load()
				if err := e.auth(a.login, a.password, a.from); !errors.Is(err, a.want) || (a.want == nil) != (err == nil) {
					t.Fatalf("attempt %d (%s from %s) = %v, want %v", i, a.login, a.from, err, a.want)
				}
				if a.want == ErrThrottled && e.verifies.Load() != before {
					t.Errorf("attempt %d: a throttled login was verified", i)
				}
			}
		})
	}
}

func TestCredentialsThrottleWindow(t *testing.T) {
	e := newCredEnv(t, CredentialOptions{AddrLimit: 2, LoginLimit: -1, Window: 10 * time.Minute, BaseDelay: -1})
	e.auth("alice", "x", addrA)
	e.clock.Advance(5 * time.Minute)
	e.auth("alice", "x", addrA)
	if err := e.auth("alice", "secret", addrA); !errors.Is(err, ErrThrottled) {
		t.Fatalf("after the limit: %v", err)
	}
	// The window counts from the first failure.
	e.clock.Advance(5*time.Minute - time.Second)
	if err := e.auth("alice", "secret", addrA); !errors.Is(err, ErrThrottled) {
		t.Fatalf("just inside the window: %v", err)
	}
	e.clock.Advance(time.Second)
	if err := e.auth("alice", "secret", addrA); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

func TestCredentialsThrottleBounded(t *testing.T) {
	e := newCredEnv(t, CredentialOptions{MaxTracked: 3, BaseDelay: -1})
	for i := range 10 {
		e.auth("alice", "x", netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}))
		e.auth(strings.Repeat("x", i+1), "x", addrB)
	}
	srcs, logins := e.c.throttle.srcs.(*MemoryFailures), e.c.throttle.logins.(*MemoryFailures)
	if a, l := srcs.Len(), logins.Len(); a > 3 || l > 3 || srcs.order.Len() != a || logins.order.Len() != l {
		t.Errorf("tracking %d addresses and %d logins, want at most 3 each", a, l)
	}
	// Expired windows are dropped as new failures come in.
	e.clock.Advance(DefaultWindow)
	e.auth("alice", "x", addrA)
	if a := srcs.Len(); a != 1 {
		t.Errorf("tracking %d addresses after the window, want 1", a)
	}
}

func TestCredentialsDelay(t *testing.T) {
	c := NewCredentials(nil, CredentialOptions{DummyHash: dummyTestHash})
	want := []time.Duration{0, 0, 0, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second, 4 * time.Second}
	for prior, w := range want {
		if got := c.delay(prior); got != w {
			t.Errorf("delay after %d failures = %v, want %v", prior, got, w)
		}
	}
	if got := c.delay(1000); got != DefaultMaxDelay {
		t.Errorf("delay after 1000 failures = %v", got)
	}

	// Authenticate waits that long before verifying, for the source's or
	// the login's failures, whichever are more; a cache hit does not wait.
	e := newCredEnv(t, CredentialOptions{AddrLimit: -1, LoginLimit: -1})
	e.auth("alice", "secret", addrB) // cached
	e.sleeps = nil
	for range 5 {
		e.auth("alice", "x", addrA)
	}
	e.auth("alice", "secret", addrB)
	e.auth("bob", "x", addrA)
	wantSleeps := []time.Duration{0, 0, 0, 250 * time.Millisecond, 500 * time.Millisecond, 1 * time.Second}
	if got := e.sleeps; len(got) != len(wantSleeps) {
		t.Fatalf("sleeps = %v, want %v", got, wantSleeps)
	}
	for i, w := range wantSleeps {
		if e.sleeps[i] != w {
			t.Errorf("sleeps = %v, want %v", e.sleeps, wantSleeps)
			break
		}
	}

	// A client that goes away during the delay gets no verdict.
	e.c.sleep = func(context.Context, time.Duration) bool { return false }
	before := e.verifies.Load()
	if err := e.auth("alice", "x", addrA); err == nil || errors.Is(err, ErrBadCredentials) || e.verifies.Load() != before {
		t.Errorf("cancelled during the delay: %v", err)
	}
}

func TestCredentialsRealHashes(t *testing.T) {
	if testing.Short() {
		t.Skip("argon2id is slow under -short")
	}
	h, err := passhash.Hash("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(login string) (Account, string, bool) {
		return Account{Login: login}, h, login == "erp"
	}
	c := NewCredentials(lookup, CredentialOptions{})
	if !strings.HasPrefix(c.dummy, "$argon2id$") || passhash.Check(c.dummy) != nil {
		t.Fatalf("default dummy hash %q is not a usable argon2id hash", c.dummy)
	}
	tests := []struct {
		login, password string
		want            error
	}{
		{"erp", "correct horse", nil},
		{"erp", "wrong", ErrBadCredentials},
		{"nobody", "correct horse", ErrBadCredentials},
	}
	for _, tt := range tests {
		if _, err := c.Authenticate(context.Background(), tt.login, tt.password, addrA); err != tt.want {
			t.Errorf("Authenticate(%q, %q) = %v, want %v", tt.login, tt.password, err, tt.want)
		}
	}
}

// BenchmarkCredentialsCacheHit measures a login answered from the cache.
func BenchmarkCredentialsCacheHit(b *testing.B) {
	lookup := func(login string) (Account, string, bool) {
		return Account{Login: login, Identity: "erp@contoso.com"}, "$argon2id$v=19$m=24576,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g", true
	}
	c := NewCredentials(lookup, CredentialOptions{DummyHash: dummyTestHash, Verify: func(string, string) (bool, error) { return true, nil }})
	ctx := context.Background()
	if _, err := c.Authenticate(ctx, "erp", "password", addrA); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := c.Authenticate(ctx, "erp", "password", addrA); err != nil {
			b.Fatal(err)
		}
	}
}
