package smtpfront

import (
	"strconv"
	"sync"

	"github.com/emersion/go-smtp"
)

// maxKnownUpstreams bounds the upstreams whose EHLO extensions are
// remembered; one listener normally has one or two.
const maxKnownUpstreams = 64

// upstreamExt is what an upstream's EHLO (after STARTTLS and AUTH) offers
// that the front must not promise beyond: the SIZE limit (RFC 1870) and
// SMTPUTF8 (RFC 6531).
type upstreamExt struct {
	size     int64 // SIZE parameter; 0 when absent or unlimited
	smtputf8 bool
}

// upstreamExtOf reads the extensions of c's last EHLO.
func upstreamExtOf(c *smtp.Client) upstreamExt {
	ext := upstreamExt{smtputf8: hasExt(c, "SMTPUTF8")}
	if ok, param := c.Extension("SIZE"); ok {
		ext.size = parseSize(param)
	}
	return ext
}

// parseSize reads the parameter of an EHLO SIZE line ("" or a number).
func parseSize(param string) int64 {
	n, err := strconv.ParseInt(param, 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// ehloProfile is what the front's EHLO advertises beyond the fixed list
// (PIPELINING, 8BITMIME, ENHANCEDSTATUSCODES, CHUNKING, AUTH PLAIN LOGIN):
// each profile is served by its own go-smtp server, whose fields go-smtp
// reads when it answers EHLO and enforces for MAIL SIZE= and DATA.
type ehloProfile struct {
	size     int64 // SIZE limit, > 0
	smtputf8 bool
	// secure: the front terminated TLS under the connection (implicit
	// TLS), which go-smtp cannot see: its server offers AUTH without
	// STARTTLS and no STARTTLS.
	secure bool
}

// extCache remembers the EHLO extensions of each upstream, learnt by the
// start-up probe (probe.go) and then by each session that logs in there.
// The upstream is dialled only after AUTH, but a client reads EHLO before
// AUTH and does not ask again, so a session's EHLO uses what the probe and
// earlier sessions learnt: until an upstream is known (no probe, or it
// failed), SIZE is the local limit and SMTPUTF8 is not offered. With several
// upstreams behind one listener (accounts of different providers) the
// profile is the most conservative: the smallest SIZE, SMTPUTF8 only when
// every known upstream has it.
type extCache struct {
	mu    sync.Mutex
	known map[string]upstreamExt // by upstream address
}

func newExtCache() *extCache {
	return &extCache{known: make(map[string]upstreamExt)}
}

// learn records the extensions of the upstream at addr. A new upstream
// beyond maxKnownUpstreams is not recorded (its own replies still apply).
func (c *extCache) learn(addr string, e upstreamExt) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.known[addr]; !ok && len(c.known) >= maxKnownUpstreams {
		return
	}
	c.known[addr] = e
}

// profile returns what to advertise now, never a SIZE above localMax.
func (c *extCache) profile(localMax int64) ehloProfile {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := ehloProfile{size: localMax, smtputf8: len(c.known) > 0}
	for _, e := range c.known {
		if e.size > 0 && e.size < p.size {
			p.size = e.size
		}
		p.smtputf8 = p.smtputf8 && e.smtputf8
	}
	return p
}
