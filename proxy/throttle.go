package proxy

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// ipv6ThrottleBits groups IPv6 sources by their /64: one host or site
// usually holds a whole /64 and could otherwise rotate addresses in it.
const ipv6ThrottleBits = 64

// sourceKey returns the throttling key of a client address: the address for
// IPv4, its /64 for IPv6; the zero Prefix for an unknown address.
func sourceKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	switch {
	case a.Is4():
		return netip.PrefixFrom(a, 32)
	case a.Is6():
		p, _ := a.WithZone("").Prefix(ipv6ThrottleBits)
		return p
	}
	return netip.Prefix{}
}

// sourceName returns the source key of a client address as a string for a
// FailureCounter: "192.0.2.1/32", "2001:db8::/64", or "unknown".
func sourceName(a netip.Addr) string {
	if p := sourceKey(a); p.IsValid() {
		return p.String()
	}
	return "unknown"
}

// loginKey returns the throttling key of a login: the hex SHA-256 of its
// lower-case form, so that the key's size does not depend on what a client
// sends and a shared counter never stores a login in clear.
func loginKey(login string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(login)))
	return hex.EncodeToString(sum[:])
}

// FailureCounter counts recent failed logins per key in fixed windows, for
// the throttling of Credentials: one counter for source addresses (keys
// like "192.0.2.1/32" or "2001:db8::/64") and one for logins (keys are the
// hex SHA-256 of the lower-cased login, never the login itself).
//
// The contract an implementation keeps:
//   - A window starts at a key's first failure and lasts the counter's
//     window length; when it has passed, the key counts zero again.
//   - Count returns the failures of key in its current window and how long
//     until that window ends (0 and 0 when there are none). It changes nothing.
//   - Add counts one failure of key (starting a window when there is none)
//     and returns the new count. Two Adds of one key from any number of
//     processes must never be lost: a shared implementation increments
//     atomically (Redis: INCR, with PEXPIRE on the first).
//   - Reset forgets key's failures.
//   - Methods are safe for concurrent use and should answer quickly: the
//     admission of a password check calls Count under a process-wide lock.
//   - An error makes the login fail as a temporary error (not the client's
//     fault, nothing counted), so an unreachable shared store never lets
//     guesses through unthrottled.
//
// In-flight checks are not the counter's business: Credentials bounds them
// per process. With one counter shared by n processes, guesses made one
// after another are limited as with one process; a burst arriving at all n
// at the same moment can get at most n times the limit verified.
type FailureCounter interface {
	Count(ctx context.Context, key string) (n int, resetIn time.Duration, err error)
	Add(ctx context.Context, key string) (n int, err error)
	Reset(ctx context.Context, key string) error
}

// MemoryFailures is the in-memory FailureCounter of one process, the
// default. It holds at most max keys, dropping the oldest windows first.
type MemoryFailures struct {
	now    func() time.Time
	window time.Duration
	max    int
	mu     sync.Mutex
	m      map[string]*list.Element // values are *failureCount
	order  *list.List               // front: newest window start
}

var _ FailureCounter = (*MemoryFailures)(nil)

type failureCount struct {
	key   string
	start time.Time // first failure of the window
	n     int
}

// NewMemoryFailures returns an empty counter with windows of length window
// that tracks at most max keys; now is its clock (nil: time.Now).
func NewMemoryFailures(window time.Duration, max int, now func() time.Time) *MemoryFailures {
	if now == nil {
		now = time.Now
	}
	return &MemoryFailures{now: now, window: window, max: max, m: make(map[string]*list.Element), order: list.New()}
}

// Count implements FailureCounter.
func (t *MemoryFailures) Count(_ context.Context, key string) (int, time.Duration, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	fc := t.current(key, now)
	if fc == nil {
		return 0, 0, nil
	}
	return fc.n, fc.start.Add(t.window).Sub(now), nil
}

// current returns key's count in its window, dropping an expired one. The
// caller holds mu.
func (t *MemoryFailures) current(key string, now time.Time) *failureCount {
	el, ok := t.m[key]
	if !ok {
		return nil
	}
	fc := el.Value.(*failureCount)
	if now.Sub(fc.start) >= t.window {
		t.order.Remove(el)
		delete(t.m, key)
		return nil
	}
	return fc
}

// Add implements FailureCounter.
func (t *MemoryFailures) Add(_ context.Context, key string) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if fc := t.current(key, now); fc != nil {
		fc.n++
		return fc.n, nil
	}
	t.m[key] = t.order.PushFront(&failureCount{key: key, start: now, n: 1})
	for back := t.order.Back(); back != nil; back = t.order.Back() {
		fc := back.Value.(*failureCount)
		if len(t.m) <= t.max && now.Sub(fc.start) < t.window {
			break
		}
		t.order.Remove(back)
		delete(t.m, fc.key)
	}
	return 1, nil
}

// Reset implements FailureCounter.
func (t *MemoryFailures) Reset(_ context.Context, key string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if el, ok := t.m[key]; ok {
		t.order.Remove(el)
		delete(t.m, key)
	}
	return nil
}

// Len returns how many keys have a window (for tests and metrics).
func (t *MemoryFailures) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// ThrottledError is the refusal of a login whose source or login has too
// many recent failures; it matches ErrThrottled with errors.Is. Its text
// names the source or the login for the log; the client is told only to
// come back after RetryAfter.
type ThrottledError struct {
	Source     string        // the source key, when the source is over its limit
	Login      string        // the login as sent (cut), when the login is over its limit
	Limit      int           // the limit that was reached
	RetryAfter time.Duration // until the window that refuses ends
}

func (e *ThrottledError) Error() string {
	var who []string
	if e.Source != "" {
		who = append(who, "from "+e.Source)
	}
	if e.Login != "" {
		who = append(who, "for login "+logLogin(e.Login))
	}
	return fmt.Sprintf("too many failed logins %s (limit %d), refused for %d s more without checking the password",
		strings.Join(who, " and "), e.Limit, RetrySeconds(e.RetryAfter))
}

// Is makes errors.Is(err, ErrThrottled) true.
func (e *ThrottledError) Is(target error) bool { return target == ErrThrottled }

// RetrySeconds rounds d up to whole seconds, at least one.
func RetrySeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

// throttle decides which password checks may run: it refuses a source or a
// login with too many recent failures (counted by its FailureCounters) and
// bounds the checks in flight, so that however many attempts arrive at
// once, no more run than could still fail within the limit. In-flight
// checks are not failures: an attempt waits for room and is refused only
// once failures, not attempts, reach the limit.
type throttle struct {
	addrLimit, loginLimit int // failures per window before refusal; < 0: none
	srcs, logins          FailureCounter

	mu      sync.Mutex
	pending map[string]int // checks in flight per "s"+source and "l"+login key
	changed chan struct{}  // closed and replaced when a check settles
	waiting int            // attempts waiting for room (for tests)
}

func newThrottle(addrLimit, loginLimit int, srcs, logins FailureCounter) *throttle {
	return &throttle{addrLimit: addrLimit, loginLimit: loginLimit, srcs: srcs, logins: logins,
		pending: make(map[string]int), changed: make(chan struct{})}
}

// counts returns the failures of src and login.
func (t *throttle) counts(ctx context.Context, src, login string) (a, l int, aIn, lIn time.Duration, err error) {
	if a, aIn, err = t.srcs.Count(ctx, src); err != nil {
		return 0, 0, 0, 0, fmt.Errorf("counting the failed logins of %s: %w", src, err)
	}
	if l, lIn, err = t.logins.Count(ctx, login); err != nil {
		return 0, 0, 0, 0, fmt.Errorf("counting the failed logins of a login: %w", err)
	}
	return a, l, aIn, lIn, nil
}

// refusal returns the ThrottledError for these counts, or nil.
func (t *throttle) refusal(src, login string, a, l int, aIn, lIn time.Duration) error {
	srcFull := t.addrLimit >= 0 && a >= t.addrLimit
	loginFull := t.loginLimit >= 0 && l >= t.loginLimit
	if !srcFull && !loginFull {
		return nil
	}
	e := &ThrottledError{}
	if srcFull {
		e.Source, e.Limit, e.RetryAfter = src, t.addrLimit, aIn
	}
	if loginFull {
		e.Login, e.Limit, e.RetryAfter = cutLogin(login), t.loginLimit, max(e.RetryAfter, lIn)
	}
	return e
}

// check refuses (with a *ThrottledError) when the source or the login is
// at its limit. It counts nothing.
func (t *throttle) check(ctx context.Context, src, lk, login string) error {
	a, l, aIn, lIn, err := t.counts(ctx, src, lk)
	if err != nil {
		return err
	}
	return t.refusal(src, login, a, l, aIn, lIn)
}

// admit waits until a password check of src and login fits in their
// limits, counting it in flight, and returns the failures before it (the
// larger of the two, for the delay). It refuses with a *ThrottledError once
// failures reach a limit, and gives up when ctx ends. Every admitted check
// is settled exactly once.
func (t *throttle) admit(ctx context.Context, src, lk, login string) (prior int, err error) {
	for {
		t.mu.Lock()
		a, l, aIn, lIn, err := t.counts(ctx, src, lk)
		if err == nil {
			err = t.refusal(src, login, a, l, aIn, lIn)
		}
		if err != nil {
			t.mu.Unlock()
			return 0, err
		}
		ps, pl := t.pending["s"+src], t.pending["l"+lk]
		if (t.addrLimit < 0 || a+ps < t.addrLimit) && (t.loginLimit < 0 || l+pl < t.loginLimit) {
			t.pending["s"+src], t.pending["l"+lk] = ps+1, pl+1
			t.mu.Unlock()
			return max(a, l), nil
		}
		// As many checks are in flight as failures could still be counted:
		// wait for one of them to settle.
		changed := t.changed
		t.waiting++
		t.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
		}
		t.mu.Lock()
		t.waiting--
		t.mu.Unlock()
		if ctx.Err() != nil {
			return 0, fmt.Errorf("waiting to check the password: %w", context.Cause(ctx))
		}
	}
}

// verdict is how a password check ended.
type verdict int

const (
	verdictNone    verdict = iota // no answer: the client went away, the stored hash is unusable
	verdictSuccess                // the password was right
	verdictFailure                // the password was wrong or the login unknown
)

// settle ends an admitted check: a failure is counted for the source and
// the login (before the check leaves the in-flight count, so that no one
// sees room that is not there), a success forgets the source's failures.
// The login's failures are kept after a success: a client that logs in
// often must not reset a guessing attack on its login. It returns the new
// failure counts after a failure.
func (t *throttle) settle(ctx context.Context, src, lk string, v verdict) (a, l int, err error) {
	switch v {
	case verdictFailure:
		a, l, err = t.fail(ctx, src, lk)
	case verdictSuccess:
		err = t.srcs.Reset(ctx, src)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range []string{"s" + src, "l" + lk} {
		if t.pending[k]--; t.pending[k] <= 0 {
			delete(t.pending, k)
		}
	}
	t.notifyLocked()
	return a, l, err
}

// failJoined counts the failure of an attempt that shared another's check
// (it was never in flight itself) and wakes the waiters, who may now be
// refused.
func (t *throttle) failJoined(ctx context.Context, src, lk string) (a, l int, err error) {
	a, l, err = t.fail(ctx, src, lk)
	t.mu.Lock()
	t.notifyLocked()
	t.mu.Unlock()
	return a, l, err
}

// notifyLocked wakes the attempts waiting in admit. The caller holds mu.
func (t *throttle) notifyLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// fail counts one failure of src and lk.
func (t *throttle) fail(ctx context.Context, src, lk string) (a, l int, err error) {
	a, err = t.srcs.Add(ctx, src)
	if err != nil {
		return 0, 0, fmt.Errorf("counting a failed login of %s: %w", src, err)
	}
	if l, err = t.logins.Add(ctx, lk); err != nil {
		return 0, 0, fmt.Errorf("counting a failed login: %w", err)
	}
	return a, l, nil
}

// waiters returns how many attempts wait for room (for tests).
func (t *throttle) waiters() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.waiting
}
