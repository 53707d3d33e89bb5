package proxy

import (
	"container/list"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"sync"
	"time"
)

const (
	// cacheKeyLen is the size of a verification cache key (HMAC-SHA256).
	cacheKeyLen = sha256.Size
	// maxKeyerBuf bounds the scratch buffer a pooled keyer keeps.
	maxKeyerBuf = 16 << 10
)

// cacheKey identifies one successful verification: login, password and the
// stored hash it was checked against.
type cacheKey [cacheKeyLen]byte

// verifyCache remembers successful password verifications for a while, so
// a client that logs in every minute pays for argon2id once per TTL; with
// a TTL of zero or less it remembers nothing but still derives keys. It
// holds keyed hashes only: with a random per-process key, an entry reveals
// nothing about the password even in a memory dump of another process run.
type verifyCache struct {
	ttl   time.Duration
	max   int
	macs  sync.Pool // of *keyer with the process key; set by newVerifyCache
	mu    sync.Mutex
	m     map[cacheKey]*list.Element // values are *cacheEntry
	order *list.List                 // front: newest; entries are added in expiry order
}

// keyer is a keyed HMAC with a scratch buffer for its input.
type keyer struct {
	mac hash.Hash
	buf []byte
	sum cacheKey // output buffer, so the key does not escape per call
}

type cacheEntry struct {
	key     cacheKey
	expires time.Time
}

func newVerifyCache(ttl time.Duration, max int) *verifyCache {
	secret := make([]byte, sha256.Size)
	rand.Read(secret) // never fails: crypto/rand crashes the program instead
	c := &verifyCache{
		ttl:   ttl,
		max:   max,
		m:     make(map[cacheKey]*list.Element),
		order: list.New(),
	}
	c.macs.New = func() any { return &keyer{mac: hmac.New(sha256.New, secret)} }
	return c
}

// key derives the cache key. Each field is length-prefixed so that no two
// different triples give the same input.
func (c *verifyCache) key(login, password, phc string) cacheKey {
	kr := c.macs.Get().(*keyer)
	defer c.macs.Put(kr)
	b := kr.buf[:0]
	for _, s := range [...]string{login, password, phc} {
		b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
		b = append(b, s...)
	}
	kr.mac.Reset()
	kr.mac.Write(b)
	clear(b) // the password does not linger in the pool
	kr.buf = b
	if cap(b) > maxKeyerBuf {
		kr.buf = nil
	}
	kr.mac.Sum(kr.sum[:0])
	return kr.sum
}

// hit reports whether k was verified less than the TTL ago.
func (c *verifyCache) hit(k cacheKey, now time.Time) bool {
	if c.ttl <= 0 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[k]
	if !ok {
		return false
	}
	if now.Before(el.Value.(*cacheEntry).expires) {
		return true
	}
	c.order.Remove(el)
	delete(c.m, k)
	return false
}

// add records a successful verification, dropping expired entries and, when
// full, the oldest.
func (c *verifyCache) add(k cacheKey, now time.Time) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[k]; ok {
		c.order.Remove(el)
		delete(c.m, k)
	}
	c.m[k] = c.order.PushFront(&cacheEntry{key: k, expires: now.Add(c.ttl)})
	for back := c.order.Back(); back != nil; back = c.order.Back() {
		e := back.Value.(*cacheEntry)
		if len(c.m) <= c.max && now.Before(e.expires) {
			break
		}
		c.order.Remove(back)
		delete(c.m, e.key)
	}
}

// len returns the number of entries (for tests).
func (c *verifyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
