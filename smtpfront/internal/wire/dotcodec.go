package wire

import (
	"bytes"
	"io"
)

// The DATA codec. A message crosses xoauthd dot-stuffed twice: the client
// stuffs it towards xoauthd and xoauthd stuffs it again towards the
// upstream (RFC 5321 §4.5.2). go-smtp's server and net/textproto's
// DotWriter (under go-smtp's client) undo and redo the stuffing one byte at
// a time, which cost more CPU than everything else on the SMTP path. The
// two codecs here do the same work on whole runs of bytes between the
// characters that matter ('\r', '\n', a dot at the start of a line), with
// byte-for-byte the same results, quirks included:
//
//   - Decoder reads what the client sent after DATA the way go-smtp's
//     server does (its dataReader state machine): it ends at the first
//     "\r\n.\r\n" that machine recognises and removes one leading dot of
//     every other line, without rewriting line ends.
//   - Encoder writes a message the way textproto's DotWriter does: a bare
//     "\n" becomes "\r\n" and a line starting with "." gets a second one.
//
// The tests hold both to their byte-at-a-time originals.

// States of Decoder: the subset of go-smtp's dataReader states that can
// stand between two calls (a dot at the start of a line is decided with
// the bytes after it).
const (
	decBeginLine = iota // start of a line (and of the message)
	decCR               // after a '\r' that may end a line
	decData             // inside a line
)

// Decoder undoes DATA dot-stuffing in bulk. The zero value starts at the
// beginning of a line.
type Decoder struct {
	state int
}

// Decode passes the message bytes at the start of src to emit and returns
// how many bytes of src it used. done reports that src[used:] begins with
// the end-of-data line ".\r\n", which decode does not consume. A trailing
// "." or ".\r" at the start of a line is not consumed either: decode needs
// the next bytes to tell the end-of-data line from a stuffed dot, so the
// caller keeps src[used:] and calls again with more. emit gets runs of src
// (valid only during the call) in order; dots removed by unstuffing are
// not in them.
func (d *Decoder) Decode(src []byte, emit func([]byte)) (used int, done bool) {
	i, run := 0, 0 // run: the start of the bytes not yet emitted
	flush := func(end int) {
		if end > run {
			emit(src[run:end])
		}
	}
	for i < len(src) {
		switch d.state {
		case decData:
			// Only '\r' changes anything inside a line.
			j := bytes.IndexByte(src[i:], '\r')
			if j < 0 {
				i = len(src)
				continue
			}
			i += j + 1
			d.state = decCR
		case decCR:
			// '\n' ends the line; anything else, '\r' included, is data.
			if src[i] == '\n' {
				d.state = decBeginLine
			} else {
				d.state = decData
			}
			i++
		case decBeginLine:
			switch src[i] {
			case '.':
				if i+1 >= len(src) {
					flush(i)
					return i, false
				}
				if src[i+1] == '\r' {
					if i+2 >= len(src) {
						flush(i)
						return i, false
					}
					if src[i+2] == '\n' {
						flush(i)
						return i, true
					}
					// ".\r" and a third byte: go-smtp drops the dot and the
					// '\r' and keeps the third byte as data.
					flush(i)
					run = i + 2
					i += 3
					d.state = decData
					continue
				}
				// A stuffed dot: dropped, the next byte is data whatever it is.
				flush(i)
				run = i + 1
				i += 2
				d.state = decData
			case '\r':
				d.state = decCR
				i++
			default:
				d.state = decData
				i++
			}
		}
	}
	flush(i)
	return i, false
}

// States of Encoder, as textproto's DotWriter has them.
const (
	encBeginLine = iota // start of a line (and of the message)
	encCR               // after a '\r'
	encData             // inside a line
)

// Encoder dot-stuffs a message onto w in bulk, buffering up to its
// buffer's capacity so that each write fills TLS records. It keeps the
// last two bytes back until Finish, which hands them to the caller: they
// are the message's final CRLF, which the upstream client's own DATA
// writer must see last so that it ends the data with ".\r\n" alone.
type Encoder struct {
	w     io.Writer
	buf   []byte // encoded bytes not yet written; cap is the flush size
	state int
	err   error       // the first write error; later writes are dropped
	taken func(int64) // told the message bytes of each Write (may be nil)
}

// NewEncoder returns an encoder writing to w through buf (its length is
// ignored; writes are about half its capacity, which must be at least 8).
func NewEncoder(w io.Writer, buf []byte, taken func(int64)) *Encoder {
	return &Encoder{w: w, buf: buf[:0], taken: taken}
}

// Write encodes p. It returns the first write error to w; after one, the
// rest of the message is dropped.
func (e *Encoder) Write(p []byte) (int, error) {
	n := len(p)
	if e.taken != nil && n > 0 && e.err == nil {
		e.taken(int64(n))
	}
	for len(p) > 0 && e.err == nil {
		if len(e.buf) >= cap(e.buf)/2 {
			e.flush()
			continue
		}
		// Encoding at most doubles a run ("\n" -> "\r\n", "." -> "..").
		k := min(len(p), (cap(e.buf)-len(e.buf))/2)
		e.encode(p[:k])
		p = p[k:]
	}
	return n, e.err
}

// encode appends the stuffed form of p to buf, which has room for it.
func (e *Encoder) encode(p []byte) {
	nl := -1 // index of the next '\n' at or after i, once searched
	for i := 0; i < len(p); {
		switch e.state {
		case encBeginLine:
			if p[i] == '.' {
				e.buf = append(e.buf, '.')
			}
			e.state = encData
		case encCR:
			c := p[i]
			e.buf = append(e.buf, c)
			i++
			if c == '\n' {
				e.state = encBeginLine
			} else {
				e.state = encData
			}
		case encData:
			if nl < i {
				if k := bytes.IndexByte(p[i:], '\n'); k >= 0 {
					nl = i + k
				} else {
					nl = len(p)
				}
			}
			end := nl
			if k := bytes.IndexByte(p[i:nl], '\r'); k >= 0 {
				end = i + k
			}
			e.buf = append(e.buf, p[i:end]...)
			i = end
			if i == len(p) {
				break
			}
			if p[i] == '\r' {
				e.buf = append(e.buf, '\r')
				e.state = encCR
			} else { // a bare '\n'
				e.buf = append(e.buf, '\r', '\n')
				e.state = encBeginLine
			}
			i++
		}
	}
}

// flush writes all but the last two buffered bytes.
// FlushHeld writes what is buffered (but the last two bytes, as flush):
// the relay calls it when the client pauses, so that the upstream gets the
// message as it comes rather than when a write's worth has gathered.
func (e *Encoder) FlushHeld() { e.flush() }

func (e *Encoder) flush() {
	if len(e.buf) <= 2 || e.err != nil {
		return
	}
	n := len(e.buf) - 2
	e.writeOut(e.buf[:n])
	k := copy(e.buf, e.buf[n:])
	e.buf = e.buf[:k]
}

func (e *Encoder) writeOut(b []byte) {
	n, err := e.w.Write(b)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		e.err = err
	}
}

// Finish writes what is buffered except a final "\r\n", which it returns
// for the caller to pass through the upstream client's DATA writer; tail is
// nil when the message does not end a line (an empty message, or a BDAT
// message ending inside a line), for which that writer adds the line end
// itself. err is the first write error.
func (e *Encoder) Finish() (tail []byte, err error) {
	if e.err != nil {
		return nil, e.err
	}
	if e.state == encCR {
		// A message ending in a bare '\r' (possible with BDAT): DotWriter
		// would complete the line with '\n'.
		if len(e.buf) == cap(e.buf) {
			e.flush()
		}
		e.buf = append(e.buf, '\n')
		e.state = encBeginLine
	}
	// At the start of a line the output ends with "\r\n" (every '\n' is
	// written after a '\r'), unless the message is empty.
	if e.state == encBeginLine && len(e.buf) >= 2 {
		e.flush()
		if e.err != nil {
			return nil, e.err
		}
		e.buf = e.buf[:0]
		return crlf, nil
	}
	if len(e.buf) > 0 {
		e.writeOut(e.buf)
		e.buf = e.buf[:0]
	}
	return nil, e.err
}

var crlf = []byte("\r\n")
