package proxy

import (
	"container/list"
	"crypto/sha256"
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

// loginKey returns the throttling key of a login: a hash of its lower-case
// form, so that the key's size does not depend on what a client sends.
func loginKey(login string) [sha256.Size]byte {
	return sha256.Sum256([]byte(strings.ToLower(login)))
}

// failureTable counts recent failures per key in fixed windows: a window
// starts at a key's first failure and its count is forgotten when the window
// has passed. It holds at most max keys, dropping the oldest windows first.
type failureTable[K comparable] struct {
	window time.Duration
	max    int
	m      map[K]*list.Element // values are *failureCount[K]
	order  *list.List          // front: newest window start
}

type failureCount[K comparable] struct {
	key   K
	start time.Time // first failure of the window
	n     int
}

func newFailureTable[K comparable](window time.Duration, max int) *failureTable[K] {
	return &failureTable[K]{window: window, max: max, m: make(map[K]*list.Element), order: list.New()}
}

// count returns the failures of k in its current window.
func (t *failureTable[K]) count(k K, now time.Time) int {
	el, ok := t.m[k]
	if !ok {
		return 0
	}
	fc := el.Value.(*failureCount[K])
	if now.Sub(fc.start) >= t.window {
		t.order.Remove(el)
		delete(t.m, k)
		return 0
	}
	return fc.n
}

// add counts a failure of k and returns the new count.
func (t *failureTable[K]) add(k K, now time.Time) int {
	if n := t.count(k, now); n > 0 {
		fc := t.m[k].Value.(*failureCount[K])
		fc.n++
		return fc.n
	}
	t.m[k] = t.order.PushFront(&failureCount[K]{key: k, start: now, n: 1})
	for back := t.order.Back(); back != nil; back = t.order.Back() {
		fc := back.Value.(*failureCount[K])
		if len(t.m) <= t.max && now.Sub(fc.start) < t.window {
			break
		}
		t.order.Remove(back)
		delete(t.m, fc.key)
	}
	return 1
}

// sub takes back one failure of k (counted in its current window).
func (t *failureTable[K]) sub(k K, now time.Time) {
	if t.count(k, now) == 0 {
		return
	}
	el := t.m[k]
	if fc := el.Value.(*failureCount[K]); fc.n > 1 {
		fc.n--
		return
	}
	t.order.Remove(el)
	delete(t.m, k)
}

// reset forgets k.
func (t *failureTable[K]) reset(k K) {
	if el, ok := t.m[k]; ok {
		t.order.Remove(el)
		delete(t.m, k)
	}
}

// throttle tracks failed local logins per source and per login.
type throttle struct {
	addrLimit, loginLimit int // failures per window before refusal; < 0: none
	mu                    sync.Mutex
	addrs                 *failureTable[netip.Prefix]
	logins                *failureTable[[sha256.Size]byte]
}

// reservation is an attempt counted by reserve before its password is
// checked.
type reservation struct {
	prior              int  // failures counted before it (the larger of source and login)
	srcFull, loginFull bool // it brought the source or the login to its limit
}

// reserve counts an attempt as a failure of the source and the login before
// its password is checked, so that attempts arriving together cannot all pass
// the limit before the first failure is counted: per window, a source or a
// login gets at most its limit of verifications, however many connections
// try at once. It refuses (counting nothing) when either is at its limit.
// A failure stays counted; succeeded and refund settle the other outcomes.
func (t *throttle) reserve(src netip.Prefix, login [sha256.Size]byte, now time.Time) (r reservation, refused bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.addrs.count(src, now)
	l := t.logins.count(login, now)
	if t.addrLimit >= 0 && a >= t.addrLimit || t.loginLimit >= 0 && l >= t.loginLimit {
		return reservation{prior: max(a, l)}, true
	}
	a, l = t.addrs.add(src, now), t.logins.add(login, now)
	return reservation{prior: max(a, l) - 1, srcFull: a == t.addrLimit, loginFull: l == t.loginLimit}, false
}

// succeeded settles a reserved attempt whose password was right: it forgets
// the source's failures and takes the attempt back from the login. The
// login's earlier failures are kept: a client that logs in often must not
// reset a guessing attack on its login.
func (t *throttle) succeeded(src netip.Prefix, login [sha256.Size]byte, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.addrs.reset(src)
	t.logins.sub(login, now)
}

// refund takes back a reserved attempt that got no verdict (the client went
// away while it waited, or the stored hash is unusable).
func (t *throttle) refund(src netip.Prefix, login [sha256.Size]byte, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.addrs.sub(src, now)
	t.logins.sub(login, now)
}
