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

// check returns the failures already counted against the source and the
// login (the larger of the two), and whether either is over its limit.
func (t *throttle) check(src netip.Prefix, login [sha256.Size]byte, now time.Time) (prior int, refused bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.addrs.count(src, now)
	l := t.logins.count(login, now)
	refused = t.addrLimit >= 0 && a >= t.addrLimit || t.loginLimit >= 0 && l >= t.loginLimit
	return max(a, l), refused
}

// failed counts a failure and reports whether it brought the source or the
// login to its limit just now.
func (t *throttle) failed(src netip.Prefix, login [sha256.Size]byte, now time.Time) (srcLimited, loginLimited bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.addrs.add(src, now)
	l := t.logins.add(login, now)
	return a == t.addrLimit, l == t.loginLimit
}

// succeeded forgets the source's failures. The login's are kept: a client
// that logs in often must not reset a guessing attack on its login.
func (t *throttle) succeeded(src netip.Prefix) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.addrs.reset(src)
}
