package smtpfront

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xoauthd/xoauthd/proxy"
)

// clientConn is the client connection as go-smtp's server sees it. It owns
// every read deadline of the connection (go-smtp's ReadTimeout stays zero),
// so a cancelled context, the pre-auth deadline and the idle timeout cannot
// be undone by a later deadline, and it tells ServeConn when go-smtp closed it.
//
// The layers, from go-smtp down: go-smtp's own TLS after STARTTLS, then
// clientConn, then the protocol trace (when on), then the front's TLS for
// implicit TLS, then the accepted connection.
type clientConn struct {
	net.Conn                 // what clientConn reads and writes (see above)
	pc       *proxy.Conn     // set at accept; id, remote address, drain signal
	log      *slog.Logger    // pc.Log, or the server's when it has none
	ctx      context.Context // the session's; done when it must end at once
	idle     time.Duration   // inactivity bound of one read
	// implicitTLS: the front terminated TLS under this connection; set at
	// accept. go-smtp cannot see it (see ehloProfile.secure).
	implicitTLS bool
	// stopTrace ends the protocol trace (proxy.StopTrace on the traced
	// connection); set at accept.
	stopTrace func()

	// preAuthDeadline bounds the whole dialogue before a successful AUTH, as
	// unix nanoseconds; zero once the client has logged in.
	preAuthDeadline atomic.Int64
	cancelled       atomic.Bool // the session's context is done
	// farewell, once set, is written (if not empty) by the next Read, which
	// then reports the end of input: go-smtp closes the connection.
	farewell     atomic.Pointer[string]
	farewellSent atomic.Bool
	lastReply    atomic.Int32 // replyOpen, replyLast or replyMuted (see hangUp)
	// upgraded: go-smtp began a STARTTLS handshake over this connection;
	// from then on nothing may be written to it but TLS records. top is
	// go-smtp's TLS connection, known from the first session after it.
	upgraded atomic.Bool
	top      atomic.Pointer[tls.Conn]

	// The DATA tap (datatap.go), used only on the connection's goroutine
	// (go-smtp's reads and the session's Data for DATA).
	tap  tapState
	tail [3]byte // the last bytes handed to go-smtp, oldest first
	// What go-smtp's reader holds, for command pipelining (pipeline.go).
	line lineState
	// corked holds replies to pipelined MAIL, RCPT and RSET commands, to be
	// written with the next reply or before the next read (pipeline.go).
	corked []byte
	// handshaking: go-smtp answered STARTTLS with 220; TLS records follow.
	handshaking bool
	// hs watches go-smtp's STARTTLS handshake so that a failure is logged
	// (tlswatch.go); set with handshaking, nil once a failure was logged.
	hs      *handshakeWatch
	pend    []byte  // bytes read from the client, not yet handed on; in pendBuf
	pendBuf *[]byte // from rawBufs while pend is in use
	pendErr error   // the read error behind pend, reported once pend is used up
	broken  error   // the raw stream is unusable (set by the bulk relay): every Read fails

	// inTx mirrors session.inTx for the drain (drained, readWithin),
	// which must not take the session's lock.
	inTx atomic.Bool

	mu      sync.Mutex
	inData  bool // a message is being relayed upstream (DATA or BDAT)
	closing bool // a reload ended the session (proxy.Sessions.Close)

	closeOnce sync.Once
	done      chan struct{} // closed by Close
}

func newClientConn(ctx context.Context, pc *proxy.Conn, conn net.Conn, log *slog.Logger, idle, preAuth time.Duration) *clientConn {
	if pc.Log != nil {
		log = pc.Log
	}
	c := &clientConn{Conn: conn, pc: pc, log: log, ctx: ctx, idle: idle, stopTrace: func() {}, done: make(chan struct{})}
	if preAuth > 0 {
		c.preAuthDeadline.Store(time.Now().Add(preAuth).UnixNano())
	}
	return c
}

// Read is what go-smtp reads: bytes left over from the DATA relay or behind
// a line first (see datatap.go), then the connection. Outside a bulk DATA
// relay it hands on at most one line per call, so that what the client
// pipelined behind a command stays in pend, where the session can see it
// (pipeline.go).
func (c *clientConn) Read(b []byte) (int, error) {
	if c.broken != nil {
		return 0, c.broken
	}
	if c.farewell.Load() != nil {
		return c.sayFarewell()
	}
	if c.cancelled.Load() {
		return 0, errCancelled
	}
	switch c.tap {
	case tapArmed:
		return c.readArmed(b)
	case tapTaken:
		return 0, errTapHandoff
	}
	if len(c.pend) > 0 {
		return c.handOn(b, lineLen(c.pend)), nil
	}
	if c.pendErr != nil {
		err := c.pendErr
		c.pendErr = nil
		return 0, err
	}
	n, err := c.read(b)
	if !c.handshaking && !c.upgraded.Load() {
		n, err = c.keepAfterLine(b, n, err)
	}
	if c.hs != nil {
		c.hs.read(b[:n], err)
	}
	c.noteTail(b[:n])
	c.noteLine(b[:n])
	return n, err
}

// read reads with a deadline of min(now+idle, pre-auth deadline), or fails at
// once when the session was cancelled or is to be hung up.
func (c *clientConn) read(b []byte) (int, error) {
	n, err, _ := c.readWithin(b, 0)
	return n, err
}

// readWithin is read, except that with soon > 0 it gives up after soon
// (stalled: no byte came and the deadline was not the session's own), so
// that the caller can do something before it waits longer.
func (c *clientConn) readWithin(b []byte, soon time.Duration) (n int, err error, stalled bool) {
	if err := c.flushCorked(); err != nil {
		return 0, err, false
	}
	if c.farewell.Load() != nil {
		n, err := c.sayFarewell()
		return n, err, false
	}
	if c.draining() && !c.busy() {
		c.hangUp(replyLine(replyShuttingDown))
		n, err := c.sayFarewell()
		return n, err, false
	}
	var dl time.Time
	if c.idle > 0 {
		dl = time.Now().Add(c.idle)
	}
	if pa := c.preAuthDeadline.Load(); pa != 0 {
		if t := time.Unix(0, pa); dl.IsZero() || t.Before(dl) {
			dl = t
		}
	}
	short := false
	if soon > 0 {
		if t := time.Now().Add(soon); dl.IsZero() || t.Before(dl) {
			dl, short = t, true
		}
	}
	c.Conn.SetReadDeadline(dl)
	// Checked after setting the deadline: cancel and sessionClosed set their
	// own past deadline after raising their flag, so one of the two wins.
	if c.cancelled.Load() {
		return 0, errCancelled, false
	}
	if c.farewell.Load() != nil {
		n, err := c.sayFarewell()
		return n, err, false
	}
	n, err = c.Conn.Read(b)
	if n == 0 && err != nil && !c.cancelled.Load() && c.farewell.Load() != nil {
		n, err := c.sayFarewell() // the read was interrupted to hang up
		return n, err, false
	}
	if short && n == 0 && errors.Is(err, os.ErrDeadlineExceeded) && !c.cancelled.Load() {
		return 0, nil, true
	}
	return n, err, false
}

// sayFarewell writes the farewell line once (if any) and reports the end
// of input. After go-smtp's STARTTLS the line goes through go-smtp's TLS
// connection; while that is not known yet, nothing is written.
func (c *clientConn) sayFarewell() (int, error) {
	f := c.farewell.Load()
	if *f == "" || !c.farewellSent.CompareAndSwap(false, true) {
		return 0, io.EOF
	}
	var w net.Conn = c.Conn
	if c.upgraded.Load() {
		top := c.top.Load()
		if top == nil {
			return 0, io.EOF
		}
		w = top
	}
	w.SetWriteDeadline(time.Now().Add(writeTimeout))
	if len(c.corked) > 0 && !c.upgraded.Load() {
		w.Write(append(c.corked, *f...))
		c.corked = c.corked[:0]
		return 0, io.EOF
	}
	io.WriteString(w, *f)
	return 0, io.EOF
}

// cancel makes the current and every later Read fail; it is called when the
// session's context is done.
func (c *clientConn) cancel() {
	c.cancelled.Store(true)
	c.Conn.SetReadDeadline(time.Now())
}

// hangUp ends the session at the next read: line (a full reply with CRLF, or
// "") is written first. "" means the reply go-smtp writes next is the last
// one (a 421): replies to commands the client pipelined behind it are
// dropped, since nothing may follow a 421 (RFC 5321 §3.8).
func (c *clientConn) hangUp(line string) {
	c.farewell.CompareAndSwap(nil, &line)
	if line == "" {
		c.lastReply.CompareAndSwap(replyOpen, replyLast)
	}
}

// States of clientConn.lastReply.
const (
	replyOpen  = iota // replies go to the client
	replyLast         // the next write is the last reply
	replyMuted        // the last reply was written; later ones are dropped
)

// Write is what go-smtp writes (replies, or TLS records after its STARTTLS).
func (c *clientConn) Write(b []byte) (int, error) {
	if c.startsTLS(b) {
		// What the client sent behind STARTTLS came before the handshake
		// and is dropped, as go-smtp drops its own buffer (RFC 3207 §4.2,
		// CVE-2011-0411). From here on the client sends TLS records, which
		// are handed on as they come, not line by line.
		c.pend = c.pend[:0]
		c.releasePending()
		c.handshaking = true
		c.hs = newHandshakeWatch()
	} else if c.hs != nil {
		c.watchHandshake(b)
	}
	switch c.lastReply.Load() {
	case replyMuted:
		return len(b), nil
	case replyLast:
		n, err := c.writeOut(b)
		c.lastReply.Store(replyMuted)
		return n, err
	}
	if c.cork(b) {
		return len(b), nil
	}
	return c.writeOut(b)
}

// sessionClosed is the session's proxy.OnSessionClose: a reload removed the
// account or changed its password. A waiting read is interrupted so the
// client gets "421 4.7.0" at once; a message being relayed is finished
// first (endData says goodbye after its reply).
func (c *clientConn) sessionClosed(error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closing = true
	if c.inData {
		return
	}
	c.hangUp(replyLine(replyAccountChanged))
	c.Conn.SetReadDeadline(time.Now())
}

// drained is called when the server begins a graceful shutdown. A session
// between transactions (or not logged in) ends at once with 421 4.3.2: a
// waiting read is interrupted. A transaction under way goes on: its reads
// are left alone, and once it has ended the next read says goodbye
// (readWithin), so a MAIL gets 421 4.3.2 (session.Mail).
func (c *clientConn) drained() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inTx.Load() || c.inData {
		return
	}
	c.hangUp(replyLine(replyShuttingDown))
	c.Conn.SetReadDeadline(time.Now())
}

// busy reports whether an SMTP transaction is under way: a MAIL was
// accepted and its message has not been answered yet.
func (c *clientConn) busy() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inTx.Load() || c.inData
}

// beginData and endData bracket the relay of one message.
func (c *clientConn) beginData() {
	c.mu.Lock()
	c.inData = true
	c.mu.Unlock()
}

func (c *clientConn) endData() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inData = false
	if c.closing {
		// Written at the next read, after go-smtp sent the message's reply.
		c.hangUp(replyLine(replyAccountChanged))
	}
}

// loggedIn lifts the pre-auth deadline.
func (c *clientConn) loggedIn() { c.preAuthDeadline.Store(0) }

func (c *clientConn) authenticated() bool { return c.preAuthDeadline.Load() == 0 }

// draining reports whether the server is shutting down gracefully.
func (c *clientConn) draining() bool {
	select {
	case <-c.pc.Drain:
		return true
	default:
		return false
	}
}

// Close closes the connection and tells ServeConn that go-smtp is done with it.
func (c *clientConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() { close(c.done) })
	return err
}

// clientConnOf finds the clientConn under the net.Conn go-smtp hands to the
// backend (a *tls.Conn wraps it after STARTTLS) and records that TLS
// connection as the one to write to.
func clientConnOf(nc net.Conn) (*clientConn, bool) {
	var top *tls.Conn
	for range 4 {
		switch v := nc.(type) {
		case *clientConn:
			if top != nil {
				v.top.CompareAndSwap(nil, top)
			}
			return v, true
		case *tls.Conn:
			if top == nil {
				top = v
			}
			nc = v.NetConn()
		default:
			return nil, false
		}
	}
	return nil, false
}

// errCancelled is the read error of a cancelled session. It is a timeout, so
// go-smtp answers it with 421 and closes without logging an error.
var errCancelled net.Error = cancelledError{}

type cancelledError struct{}

func (cancelledError) Error() string   { return "session cancelled" }
func (cancelledError) Timeout() bool   { return true }
func (cancelledError) Temporary() bool { return true }
