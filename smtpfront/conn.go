package smtpfront

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xoauthd/xoauthd/proxy"
)

// clientConn is the client connection as go-smtp's server sees it. It owns
// every read deadline of the connection (go-smtp's ReadTimeout stays zero),
// so a cancelled context, the pre-auth deadline and the idle timeout cannot
// be undone by a later deadline, and it tells ServeConn when go-smtp closed it.
type clientConn struct {
	net.Conn                 // the accepted *proxy.Conn
	pc       *proxy.Conn     // set at accept; id, remote address, drain signal
	log      *slog.Logger    // pc.Log, or the server's when it has none
	ctx      context.Context // the session's; done when it must end at once
	idle     time.Duration   // inactivity bound of one read

	// preAuthDeadline bounds the whole dialogue before a successful AUTH, as
	// unix nanoseconds; zero once the client has logged in.
	preAuthDeadline atomic.Int64
	cancelled       atomic.Bool // the session's context is done
	// farewell, once set, is written (if not empty) by the next Read, which
	// then reports the end of input: go-smtp closes the connection.
	farewell     atomic.Pointer[string]
	farewellSent atomic.Bool

	closeOnce sync.Once
	done      chan struct{} // closed by Close
}

func newClientConn(ctx context.Context, pc *proxy.Conn, log *slog.Logger, idle, preAuth time.Duration) *clientConn {
	if pc.Log != nil {
		log = pc.Log
	}
	c := &clientConn{Conn: pc, pc: pc, log: log, ctx: ctx, idle: idle, done: make(chan struct{})}
	if preAuth > 0 {
		c.preAuthDeadline.Store(time.Now().Add(preAuth).UnixNano())
	}
	return c
}

// Read reads with a deadline of min(now+idle, pre-auth deadline), or fails at
// once when the session was cancelled or is to be hung up.
func (c *clientConn) Read(b []byte) (int, error) {
	if f := c.farewell.Load(); f != nil {
		if *f != "" && c.farewellSent.CompareAndSwap(false, true) {
			c.Conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			io.WriteString(c.Conn, *f)
		}
		return 0, io.EOF
	}
	if c.draining() && !c.authenticated() {
		c.hangUp(replyLine(replyShuttingDown))
		return c.Read(b)
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
	c.Conn.SetReadDeadline(dl)
	// Checked after setting the deadline: cancel sets its own past deadline
	// after raising the flag, so one of the two always wins.
	if c.cancelled.Load() {
		return 0, errCancelled
	}
	return c.Conn.Read(b)
}

// cancel makes the current and every later Read fail; it is called when the
// session's context is done.
func (c *clientConn) cancel() {
	c.cancelled.Store(true)
	c.Conn.SetReadDeadline(time.Now())
}

// hangUp ends the session at the next read: line (a full reply with CRLF, or
// "") is written first.
func (c *clientConn) hangUp(line string) {
	c.farewell.CompareAndSwap(nil, &line)
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
// backend (a *tls.Conn wraps it once local STARTTLS exists).
func clientConnOf(nc net.Conn) (*clientConn, bool) {
	for range 4 {
		switch v := nc.(type) {
		case *clientConn:
			return v, true
		case *tls.Conn:
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
