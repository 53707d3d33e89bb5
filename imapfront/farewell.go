package imapfront

import (
	"bytes"
	"sync/atomic"

	"github.com/xoauthd/xoauthd/proxy"
)

// Following a relayed session for its goodbye at shutdown.
const (
	// byeShutdown is the goodbye of a session the server is shutting down.
	byeShutdown = "Server shutting down"
	// maxTrackedTail is how much of the end of a response line is kept to
	// find a literal announcement ("{123}") split across reads.
	maxTrackedTail = 32
	// maxTrackedHead is how much of the start of a client line is kept to
	// find a COMPRESS command.
	maxTrackedHead = 64
)

// farewell is the proxy.Farewell of a relayed IMAP session. An untagged BYE
// may come at any time between two responses (RFC 9051 section 7.1.5), but
// not inside one: the relay sends it only when everything the client was
// sent ends a line that announces no literal, and no literal is still
// being sent. That follows the server's responses exactly: a response line
// ends at CRLF unless it ends with a literal's "{n}" (RFC 9051 section 4.3),
// whose n bytes follow and after which the line goes on.
//
// After the client asks for COMPRESS (RFC 4978) the stream becomes
// compressed data that cannot be followed, so no goodbye is sent.
type farewell struct {
	// Client side (the relay's goroutine that copies the client's bytes).
	head     []byte      // start of the client's current line
	headDone bool        // head was checked; the rest of the line is skipped
	compress atomic.Bool // the client sent a COMPRESS command

	// Upstream side (the goroutine that writes to the client).
	midLine bool   // the client was sent part of a line
	literal int64  // bytes of a literal still to be sent
	tail    []byte // end of the current line so far, at most maxTrackedTail
	lost    bool   // the responses can no longer be followed
}

var _ proxy.Farewell = (*farewell)(nil)

// ClientBytes looks for a COMPRESS command at the start of each line. A
// line start inside a literal (APPEND data) may be taken for a command:
// that only costs the goodbye.
func (f *farewell) ClientBytes(p []byte) {
	for len(p) > 0 && !f.compress.Load() {
		i := bytes.IndexByte(p, '\n')
		line := p
		if i >= 0 {
			line = p[:i]
		}
		if !f.headDone {
			f.head = append(f.head, line[:min(len(line), maxTrackedHead-len(f.head))]...)
			if i >= 0 || len(f.head) == maxTrackedHead {
				f.checkHead()
			}
		}
		if i < 0 {
			return
		}
		p = p[i+1:]
		f.head, f.headDone = f.head[:0], false
	}
}

// checkHead notes a COMPRESS command in the line start f.head.
func (f *farewell) checkHead() {
	f.headDone = true
	fields := bytes.Fields(f.head)
	if len(fields) >= 2 && bytes.EqualFold(fields[1], []byte("COMPRESS")) {
		f.compress.Store(true)
	}
}

// UpstreamBytes follows the response lines and literals the client got.
func (f *farewell) UpstreamBytes(p []byte) {
	for len(p) > 0 && !f.lost {
		if f.literal > 0 {
			n := min(int64(len(p)), f.literal)
			f.literal -= n
			p = p[n:]
			f.midLine = true // the line goes on after its literal
			continue
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			f.keepTail(p)
			f.midLine = true
			return
		}
		f.keepTail(p[:i])
		p = p[i+1:]
		n, isLiteral, ok := literalAtEnd(f.tail)
		f.tail = f.tail[:0]
		switch {
		case !ok:
			f.lost = true
		case isLiteral:
			f.literal, f.midLine = n, true
		default:
			f.midLine = false
		}
	}
}

// keepTail appends p to the kept end of the current line.
func (f *farewell) keepTail(p []byte) {
	if len(p) >= maxTrackedTail {
		f.tail = append(f.tail[:0], p[len(p)-maxTrackedTail:]...)
		return
	}
	if over := len(f.tail) + len(p) - maxTrackedTail; over > 0 {
		f.tail = append(f.tail[:0], f.tail[over:]...)
	}
	f.tail = append(f.tail, p...)
}

// literalAtEnd reports whether the line end (without its LF) announces a
// literal, "{n}" or "{n+}" before the CR, and its size. ok is false for a
// size too large to follow.
func literalAtEnd(end []byte) (n int64, isLiteral, ok bool) {
	end = bytes.TrimSuffix(end, []byte("\r"))
	if !bytes.HasSuffix(end, []byte("}")) {
		return 0, false, true
	}
	end = bytes.TrimSuffix(end[:len(end)-1], []byte("+"))
	i := len(end)
	for i > 0 && end[i-1] >= '0' && end[i-1] <= '9' {
		i--
	}
	if i == len(end) || i == 0 || end[i-1] != '{' {
		return 0, false, true
	}
	digits := end[i:]
	if len(digits) > 18 {
		return 0, true, false
	}
	for _, d := range digits {
		n = n*10 + int64(d-'0')
	}
	return n, true, true
}

// Goodbye returns the untagged BYE when the client is between responses.
func (f *farewell) Goodbye() []byte {
	if f.lost || f.midLine || f.literal > 0 || f.compress.Load() {
		return nil
	}
	return []byte("* BYE " + byeShutdown + "\r\n")
}
