package smtpfront

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/smtpfront/internal/wire"
)

// The DATA tap lets the session relay a message from the raw client stream
// in bulk instead of through go-smtp's DATA reader, which undoes the dot-
// stuffing one byte at a time (see package wire). go-smtp keeps the command
// dialogue, and the hand-over works through what go-smtp reads:
//
//  1. Data arms the tap. go-smtp's reader first decodes what its buffer
//     already holds. When it asks clientConn for more, clientConn hands it
//     bytes only up to a point where its decoder is certainly at the start
//     of a line, then answers the next read with errTapHandoff. go-smtp's
//     DATA reader passes that error up to Data with the decoded bytes
//     before it.
//  2. Data relays the rest of the message from the raw stream with the bulk
//     codec, up to the end-of-data line ".\r\n", which stays unread.
//  3. go-smtp's reader then reads ".\r\n" (and whatever the client sent
//     after it) from clientConn and ends the message as if it had read all
//     of it: its state and its line count match.
//
// Only go-smtp's DATA reader over clientConn takes part: not BDAT (its
// chunks are not stuffed) and not after go-smtp's own STARTTLS (its TLS
// layer reads clientConn's bytes as records); those keep go-smtp's reader.

// tapState is where the DATA tap stands.
type tapState uint8

const (
	tapOff   tapState = iota // go-smtp reads as usual
	tapArmed                 // DATA: hand bytes up to a line start, then hand off
	tapTaken                 // the session reads the raw stream
)

// errTapHandoff tells the session, through go-smtp's DATA reader, that it
// reads the rest of the message from the raw stream.
var errTapHandoff = errors.New("smtpfront: the DATA relay takes over the client stream")

// rawBufSize is the buffer of raw client bytes during a bulk relay.
const rawBufSize = 64 << 10

var rawBufs = sync.Pool{New: func() any { b := make([]byte, rawBufSize); return &b }}

// armTap arms the tap when r is go-smtp's DATA reader directly over
// clientConn; it reports whether it did.
func (c *clientConn) armTap(r io.Reader) bool {
	if c.upgraded.Load() || !isDataReader(r) {
		return false
	}
	c.tap = tapArmed
	return true
}

// disarmTap ends the tap after a message (armTap returned true).
func (c *clientConn) disarmTap() {
	c.tap = tapOff
	c.releasePending()
}

// isDataReader reports whether r is go-smtp's DATA reader (BDAT hands the
// session an *io.PipeReader). If a go-smtp release renames it, messages
// take go-smtp's slower byte-by-byte path; TestDataTapTaken notices.
func isDataReader(r io.Reader) bool {
	return fmt.Sprintf("%T", r) == "*smtp.dataReader"
}

// readArmed is Read while the tap is armed: at a line start it hands off,
// otherwise it hands go-smtp bytes up to the next line start it can be
// sure of.
func (c *clientConn) readArmed(b []byte) (int, error) {
	if atLineStart(c.tail) {
		c.tap = tapTaken
		return 0, errTapHandoff
	}
	if len(c.pend) == 0 {
		if err := c.fillPending(); err != nil {
			return 0, err
		}
	}
	d := c.pend[:min(len(b), len(c.pend))]
	return c.handOn(b, lineStartAfter(c.tail, d)), nil
}

// handOn gives go-smtp the first n bytes of pend (at most len(b)).
func (c *clientConn) handOn(b []byte, n int) int {
	n = copy(b, c.pend[:n])
	c.pend = c.pend[n:]
	c.noteTail(b[:n])
	c.noteLine(b[:n])
	if len(c.pend) == 0 && c.tap == tapOff {
		c.releasePending()
	}
	return n
}

// noteTail remembers the last three bytes handed to go-smtp.
func (c *clientConn) noteTail(p []byte) {
	switch {
	case len(p) >= 3:
		copy(c.tail[:], p[len(p)-3:])
	case len(p) > 0:
		k := len(p)
		copy(c.tail[:], c.tail[k:])
		copy(c.tail[3-k:], p)
	}
}

// atLineStart reports whether a decoder that has read a DATA stream ending
// in tail is certainly at the start of a line: tail is "x\r\n" with x
// neither '\r', '\n' nor '.'. After such an x go-smtp's DATA decoder is
// inside a line whatever came before, so "\r\n" ends that line. (After
// "\r\r\n", "..\r\n" or ".\r\r\n" it may not be: the decoder has quirks,
// and the tap does not hand off there.)
func atLineStart(tail [3]byte) bool {
	x := tail[0]
	return tail[1] == '\r' && tail[2] == '\n' && x != '\r' && x != '\n' && x != '.'
}

// lineStartAfter returns the length of the shortest non-empty prefix of d
// after which tail+d is at a certain line start (atLineStart), or len(d)
// when there is none.
func lineStartAfter(tail [3]byte, d []byte) int {
	for i := 0; i < len(d); {
		j := indexByteFrom(d, i, '\n')
		if j < 0 {
			break
		}
		var t [3]byte
		for k := range 3 {
			if p := j - 2 + k; p >= 0 {
				t[k] = d[p]
			} else {
				t[k] = tail[3+p]
			}
		}
		if atLineStart(t) {
			return j + 1
		}
		i = j + 1
	}
	return len(d)
}

// indexByteFrom is bytes.IndexByte of d[from:], as an index into d.
func indexByteFrom(d []byte, from int, c byte) int {
	if i := bytes.IndexByte(d[from:], c); i >= 0 {
		return from + i
	}
	return -1
}

// fillPending reads more of the client stream behind pend.
func (c *clientConn) fillPending() error { return c.fillPendingOr(nil) }

// stallTime is how long the bulk relay waits for more of a message before
// it passes on what it holds (fillPendingOr).
const stallTime = 50 * time.Millisecond

// fillPendingOr is fillPending; when the client sends nothing for
// stallTime, it calls stalled once and then waits as fillPending does.
func (c *clientConn) fillPendingOr(stalled func()) error {
	if c.pendErr != nil {
		err := c.pendErr
		c.pendErr = nil
		return err
	}
	if c.pendBuf == nil {
		c.pendBuf = rawBufs.Get().(*[]byte)
	}
	buf := *c.pendBuf
	k := copy(buf, c.pend)
	for range 100 {
		soon := time.Duration(0)
		if stalled != nil {
			soon = stallTime
		}
		n, err, stall := c.readWithin(buf[k:], soon)
		if stall {
			stalled()
			stalled = nil
			continue
		}
		c.pend = buf[:k+n]
		switch {
		case n > 0:
			c.pendErr = err
			return nil
		case err != nil:
			return err
		}
	}
	return io.ErrNoProgress
}

// releasePending gives the raw buffer back once pend is used up.
func (c *clientConn) releasePending() {
	if len(c.pend) == 0 && c.pendBuf != nil {
		rawBufs.Put(c.pendBuf)
		c.pendBuf = nil
		c.pend = nil
	}
}

// relayMessage is step 2: it decodes the rest of the message from the raw
// stream (the tap is taken, the stream at a line start) into w, up to the
// end-of-data line, which it leaves in pend for go-smtp. It counts the
// message bytes and checks them against limit (no limit if < 0) and every
// line against go-smtp's line limit. Past limit the rest is read but not
// written (smtp.ErrDataTooLarge); a write error of w is w's to report (a
// wire.Encoder keeps it). A read error or a too long line ends the stream for
// good (clientConn.broken), as it would inside go-smtp.
func (c *clientConn) relayMessage(w io.Writer, limit int64) (n int64, err error) {
	var dec wire.Decoder
	tooLarge := false
	emit := func(run []byte) {
		n += int64(len(run))
		if limit >= 0 && n > limit {
			tooLarge = true
		}
		if !tooLarge {
			w.Write(run)
		}
	}
	line := 1 // go-smtp's count at the start of a line: the '\n' counts
	for {
		used, done := dec.Decode(c.pend, emit)
		if !checkLines(c.pend[:used], &line, maxLineLength) {
			c.broken = smtp.ErrTooLongLine
			break
		}
		c.pend = c.pend[used:]
		if done {
			break
		}
		// When the client pauses, what has come so far goes on: the
		// upstream is not left waiting for data the relay holds.
		var stalled func()
		if f, ok := w.(interface{ FlushHeld() }); ok && !tooLarge {
			stalled = f.FlushHeld
		}
		if err := c.fillPendingOr(stalled); err != nil {
			c.broken = err
			break
		}
	}
	c.tap = tapOff
	switch {
	case c.broken != nil:
		return n, c.broken
	case tooLarge:
		return n, smtp.ErrDataTooLarge
	}
	return n, nil
}

// checkLines counts p into go-smtp's line length count (each byte counts,
// a '\n' starts the count again at 1) and reports whether it stayed within
// max.
func checkLines(p []byte, count *int, max int) bool {
	for len(p) > 0 {
		j := indexByteFrom(p, 0, '\n')
		if j < 0 {
			*count += len(p)
			return *count <= max
		}
		if *count+j > max {
			return false
		}
		*count = 1
		p = p[j+1:]
	}
	return true
}
