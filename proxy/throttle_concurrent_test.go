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

	"github.com/xoauthd/xoauthd/internal/testkit"
)

// TestCredentialsThrottleConcurrent checks that the limits bound password
// verifications when many attempts arrive at once: a guesser that opens
// hundreds of connections in parallel must not get more verifications than
// one that sends its guesses one after another.
func TestCredentialsThrottleConcurrent(t *testing.T) {
	const attempts = 200
	tests := []struct {
		name  string
		opts  CredentialOptions
		login func(i int) string
		from  func(i int) netip.Addr
		max   int32
	}{
		{"one address, many logins", CredentialOptions{AddrLimit: 5, LoginLimit: -1},
			func(i int) string { return fmt.Sprintf("guess%d", i) }, func(int) netip.Addr { return addrA }, 5},
		{"one login, many addresses", CredentialOptions{AddrLimit: -1, LoginLimit: 7},
			func(int) string { return "alice" }, func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}) }, 7},
		{"both limits", CredentialOptions{AddrLimit: 4, LoginLimit: 6},
			func(i int) string { return []string{"alice", "bob"}[i%2] }, func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 2, 0, byte(i % 3)}) }, 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gate := make(chan struct{})
			var verifies atomic.Int32
			tt.opts.Verify = func(phc, password string) (bool, error) {
				verifies.Add(1)
				<-gate // every attempt that gets this far waits here together
				return phc == "hash:"+password, nil
			}
			tt.opts.BaseDelay, tt.opts.CacheTTL, tt.opts.MaxConcurrent = -1, -1, attempts
			e := newCredEnv(t, tt.opts)
			var wg sync.WaitGroup
			var throttled, bad atomic.Int32
			for i := range attempts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					// A guesser tries a different password each time (the
					// same one would share a single verification).
					switch err := e.auth(tt.login(i), fmt.Sprintf("wrong%d", i), tt.from(i)); {
					case errors.Is(err, ErrThrottled):
						throttled.Add(1)
					case errors.Is(err, ErrBadCredentials):
						bad.Add(1)
					default:
						t.Errorf("attempt %d: %v", i, err)
					}
				}()
			}
			// Let the attempts pile up at the verification (or wait for
			// room there), then release.
			testkit.Eventually(t, 5*time.Second, "every attempt verifying, waiting or throttled", func() bool {
				return throttled.Load()+verifies.Load()+int32(e.c.throttle.waiters()) == attempts
			})
			close(gate)
			wg.Wait()
			if v := verifies.Load(); v > tt.max {
				t.Errorf("%d concurrent wrong passwords cost %d verifications, want at most %d", attempts, v, tt.max)
			}
			if bad.Load() != verifies.Load() || throttled.Load()+bad.Load() != attempts {
				t.Errorf("verified %d, answered bad %d, throttled %d of %d", verifies.Load(), bad.Load(), throttled.Load(), attempts)
			}
		})
	}
}

// TestCredentialsRefundWithoutVerdict checks that an attempt that ends
// without a verdict (the client went away during the delay) is not counted
// as a failure, and that a success does not count against its login.
func TestCredentialsRefundWithoutVerdict(t *testing.T) {
	e := newCredEnv(t, CredentialOptions{AddrLimit: 2, LoginLimit: 2, CacheTTL: -1})
	sleep := e.c.sleep
	e.c.sleep = func(context.Context, time.Duration) bool { return false }
	for range 5 {
		if err := e.auth("alice", "x", addrA); err == nil || errors.Is(err, ErrBadCredentials) || errors.Is(err, ErrThrottled) {
			t.Fatalf("cancelled attempt: %v", err)
		}
	}
	e.c.sleep = sleep
	for range 5 {
		if err := e.auth("alice", "secret", addrA); err != nil {
			t.Fatalf("after cancelled attempts and successes: %v", err)
		}
	}
	if err := e.auth("alice", "x", addrA); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("first wrong password: %v", err)
	}
	if err := e.auth("alice", "x", addrB); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("second wrong password: %v", err)
	}
	if err := e.auth("alice", "secret", addrB); !errors.Is(err, ErrThrottled) {
		t.Fatalf("login after two failures: %v, want throttled", err)
	}
}

// TestCredentialsCachedBurst sends 100 logins with a cached password at
// once from one source (an ERP's pool reconnecting after a restart): all
// succeed, none is verified again, and no failure is counted.
func TestCredentialsCachedBurst(t *testing.T) {
	const logins = 100
	var gated atomic.Bool
	gate := make(chan struct{})
	var entered, answered, verifies atomic.Int32
	lookup := func(login string) (Account, string, bool) {
		if gated.Load() {
			entered.Add(1)
			<-gate
		}
		return Account{Login: login, Identity: "erp@contoso.com"}, "hash:secret", login == "erp"
	}
	c := NewCredentials(lookup, CredentialOptions{DummyHash: dummyTestHash, BaseDelay: -1, Verify: func(phc, password string) (bool, error) {
		verifies.Add(1)
		return phc == "hash:"+password, nil
	}})
	ctx := context.Background()
	if _, err := c.Authenticate(ctx, "erp", "secret", addrA); err != nil {
		t.Fatal(err)
	}
	gated.Store(true)
	errs := make(chan error, logins)
	var wg sync.WaitGroup
	for range logins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Authenticate(ctx, "erp", "secret", addrA)
			answered.Add(1)
			errs <- err
		}()
	}
	// Every attempt is in the lookup (or already answered) at once.
	testkit.Eventually(t, 5*time.Second, "every login held or answered", func() bool { return entered.Load()+answered.Load() == logins })
	close(gate)
	wg.Wait()
	close(errs)
	refused := 0
	for err := range errs {
		if err != nil {
			refused++
			if refused == 1 {
				t.Errorf("cached login refused: %v", err)
			}
		}
	}
	if refused > 0 {
		t.Errorf("%d of %d concurrent logins with a cached password were refused", refused, logins)
	}
	if n := verifies.Load(); n != 1 {
		t.Errorf("%d verifications, want the first login's only", n)
	}
	// A wrong password afterwards is the source's first failure, not its
	// eleventh: the burst counted nothing.
	gated.Store(false)
	for i := range DefaultAddrLimit - 1 {
		if _, err := c.Authenticate(ctx, "erp", fmt.Sprintf("wrong%d", i), addrA); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("wrong password %d after the burst: %v", i+1, err)
		}
	}
}

// TestCredentialsSharedVerification checks the single flight: attempts
// with the same login and password share one verification and its verdict,
// a wrong one counts a failure for each, and when the attempt running the
// verification gives up, the others are not answered with its error but
// check on their own.
func TestCredentialsSharedVerification(t *testing.T) {
	t.Run("same wrong password at once", func(t *testing.T) {
		const attempts = 20
		gate := make(chan struct{})
		e := newCredEnv(t, CredentialOptions{AddrLimit: -1, LoginLimit: 100, BaseDelay: -1, CacheTTL: -1,
			Verify: func(phc, password string) (bool, error) { <-gate; return phc == "hash:"+password, nil }})
		errs := make(chan error, attempts)
		for i := range attempts {
			go func() { errs <- e.auth("alice", "wrong", netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})) }()
		}
		testkit.Eventually(t, 5*time.Second, "every attempt sharing one verification", func() bool { return e.c.flights.joinedAll() == attempts-1 })
		close(gate)
		for range attempts {
			if err := <-errs; !errors.Is(err, ErrBadCredentials) {
				t.Errorf("shared wrong password: %v", err)
			}
		}
		if n, _, _ := e.c.throttle.logins.Count(context.Background(), loginKey("alice")); n != attempts {
			t.Errorf("login failures = %d, want %d (one per attempt)", n, attempts)
		}
	})
	t.Run("the verifier gives up", func(t *testing.T) {
		e := newCredEnv(t, CredentialOptions{CacheTTL: -1})
		var calls atomic.Int32
		e.c.sleep = func(ctx context.Context, _ time.Duration) bool {
			if calls.Add(1) == 1 {
				<-ctx.Done() // the first attempt's client goes away here
				return false
			}
			return true
		}
		ctx, cancel := context.WithCancel(context.Background())
		first := make(chan error, 1)
		go func() {
			_, err := e.c.Authenticate(ctx, "alice", "secret", addrA)
			first <- err
		}()
		testkit.Eventually(t, 5*time.Second, "the first attempt in its delay", func() bool { return calls.Load() == 1 })
		second := make(chan error, 1)
		go func() { second <- e.auth("alice", "secret", addrB) }()
		testkit.Eventually(t, 5*time.Second, "the second attempt sharing it", func() bool { return e.c.flights.joinedAll() == 1 })
		cancel()
		if err := <-first; !errors.Is(err, context.Canceled) || errors.Is(err, ErrBadCredentials) {
			t.Errorf("first attempt = %v, want the context's error", err)
		}
		if err := <-second; err != nil {
			t.Errorf("second attempt = %v, want a success of its own", err)
		}
		if n := e.verifies.Load(); n != 1 {
			t.Errorf("%d verifications, want 1", n)
		}
	})
}

// TestThrottledError checks what a throttled client and the log learn: the
// log names the source or the login and the limit, and RetryAfter is what
// is left of the window.
func TestThrottledError(t *testing.T) {
	e := newCredEnv(t, CredentialOptions{AddrLimit: 2, LoginLimit: 3, BaseDelay: -1, Window: 10 * time.Minute})
	e.auth("alice", "x", addrA)
	e.clock.Advance(4 * time.Minute)
	e.auth("alice", "y", addrA)
	var te *ThrottledError
	if err := e.auth("alice", "secret", addrA); !errors.As(err, &te) || !errors.Is(err, ErrThrottled) {
		t.Fatalf("over the source's limit: %v", err)
	}
	if te.Source != "192.0.2.1/32" || te.Login != "" || te.Limit != 2 || te.RetryAfter != 6*time.Minute ||
		!strings.Contains(te.Error(), "from 192.0.2.1/32 (limit 2), refused for 360 s") {
		t.Errorf("throttled = %+v (%q)", te, te.Error())
	}
	e.auth("alice", "z", addrB)
	if err := e.auth("alice", "secret", addrB); !errors.As(err, &te) || te.Login != "alice" || te.Source != "" ||
		!strings.Contains(te.Error(), `for login "alice" (limit 3)`) {
		t.Errorf("over the login's limit: %v", err)
	}
	if got := RetrySeconds(1500 * time.Millisecond); got != 2 {
		t.Errorf("RetrySeconds(1.5s) = %d, want 2", got)
	}
}
