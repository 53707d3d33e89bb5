package pop3front

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/xoauthd/xoauthd/proxy"
)

// Limits of the pre-auth dialogue (besides maxLine and Options.PreAuthTimeout).
const (
	// maxErrors is how many -ERR replies a client gets before login; the
	// connection is closed right after the last one.
	maxErrors = 3
	// lingerBytes and lingerTimeout bound how much unread client input is
	// discarded after the last reply of a server-side close, so that the
	// reply is not lost to the reset that closing with unread data causes.
	lingerBytes   = 64 << 10
	lingerTimeout = time.Second
)

// Replies of the pre-auth dialogue.
const (
	replyBye          = "+OK Bye\r\n"
	replyUserOK       = "+OK\r\n"
	replyUnknown      = "-ERR Unknown command.\r\n"
	replyNotYet       = "-ERR Not allowed before login.\r\n"
	replyNotSupported = "-ERR Not supported.\r\n"
	replyNoUser       = "-ERR No user name given, send USER first.\r\n"
	replyMissingUser  = "-ERR Missing user name.\r\n"
	replyTooLong      = "-ERR Line too long, closing connection.\r\n"
	replyTimeout      = "-ERR Login timed out, closing connection.\r\n"
	replyShutdown     = "-ERR [SYS/TEMP] Server shutting down, try again later.\r\n"
)

// session is one client connection. It lives in the goroutine that called
// ServeConn.
type session struct {
	srv    *Server
	conn   *proxy.Conn
	log    *slog.Logger   // the connection's logger; gains login and identity at login
	red    *traceRedactor // the trace's redactor, kept across STLS
	tls    *tls.Conn      // set by a completed TLS handshake; nil before
	client net.Conn       // conn.Conn, or tls once set; what the relay gets
	rw     net.Conn       // client, wrapped by the protocol trace when it is on
	r      *bufio.Reader  // reads rw, maxLine bytes; handed to the relay after login

	deadline   time.Time   // end of the pre-auth dialogue; set by serve
	stopCancel func() bool // detaches ctx from the connection deadline; set by serve

	user     string // from USER, until the next PASS or AUTH
	commands int    // command lines read so far
	errors   int    // -ERR replies sent so far
	writeErr error  // first failed write; the session ends
}

func newSession(srv *Server, c *proxy.Conn) *session {
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &session{srv: srv, conn: c, log: log, red: &traceRedactor{}}
	s.useClient(c.Conn)
	return s
}

// useClient makes conn (the accepted connection, or TLS over it) the one
// the session reads and writes. The trace (when on) sees the dialogue up to
// the login; the relay reads conn itself. Buffered input of the previous
// connection is dropped.
func (s *session) useClient(conn net.Conn) {
	s.client = conn
	s.rw = s.conn.Traced(conn, proxy.TracePeerClient, s.red)
	s.r = bufio.NewReaderSize(s.rw, maxLine)
}

// serve runs the pre-auth dialogue under one deadline for all of it. A
// cancelled ctx moves the deadline to now, which ends a pending read.
func (s *session) serve(ctx context.Context) {
	s.deadline = time.Now().Add(s.srv.opts.PreAuthTimeout)
	if err := s.conn.SetDeadline(s.deadline); err != nil {
		s.log.Debug("setting pre-auth deadline", "err", err)
		return
	}
	stopCtx := context.AfterFunc(ctx, func() { _ = s.conn.SetDeadline(time.Now()) })
	// A shutdown ends the dialogue at once: a waiting read fails and the
	// client gets -ERR (readFailed). A write is not cut.
	stopDrain := s.conn.OnDrain(func() { _ = s.conn.SetReadDeadline(time.Now()) })
	s.stopCancel = func() bool {
		stopDrain()
		return stopCtx()
	}
	defer s.stopCancel()

	if s.srv.opts.ImplicitTLS && !s.handshake() {
		return
	}
	s.write(greeting)
	for s.writeErr == nil {
		if s.draining() {
			s.log.Info("closing connection: server shutting down")
			s.finalReply(replyShutdown)
			return
		}
		line, err := readLine(s.r)
		if err != nil {
			s.readFailed(ctx, err)
			return
		}
		if s.draining() {
			s.log.Info("closing connection: server shutting down")
			s.write(replyShutdown)
			s.linger()
			return
		}
		if s.handle(ctx, line) {
			return
		}
		if s.errors >= maxErrors {
			s.log.Info("closing connection after too many errors", "errors", s.errors)
			s.linger()
			return
		}
	}
}

// handle runs one command line and reports whether the session is over.
func (s *session) handle(ctx context.Context, line []byte) (done bool) {
	cmd := parseCommand(line)
	s.commands++
	switch {
	case cmd.verb == cmdSTLS && s.srv.opts.TLS != nil:
		return s.startTLS(cmd)
	case (cmd.verb == cmdUSER || cmd.verb == cmdPASS || cmd.verb == cmdAUTH) && !s.loginAllowed():
		s.loginDisabled(ctx, cmd)
		return s.writeErr != nil
	}
	switch cmd.verb {
	case cmdCAPA:
		s.write(s.capa())
	case cmdUSER:
		s.handleUSER(cmd)
	case cmdPASS:
		return s.handlePASS(ctx, cmd)
	case cmdAUTH:
		return s.handleAUTH(ctx, cmd)
	case cmdQUIT:
		s.write(replyBye)
		s.linger()
		return true
	default:
		if reply, ok := otherCommand(cmd.verb); ok {
			s.log.Debug("command refused before login", "command", cmd.verb)
			s.fail(reply)
			break
		}
		s.fail(replyUnknown)
		if s.commands == 1 {
			// Not a POP3 client (an HTTP request, a port scan): do not
			// wait for more. The line itself is not logged: it might be
			// a password sent at the wrong moment.
			s.log.Info("closing connection after an unknown first command")
			s.linger()
			return true
		}
	}
	return s.writeErr != nil
}

// draining reports whether the server has begun a graceful shutdown, after
// which a session that has not logged in ends at its next command.
func (s *session) draining() bool {
	select {
	case <-s.conn.Drain:
		return true
	default:
		return false
	}
}

// readFailed ends the session after a failed read of a command line or SASL
// response, telling the client why when it is still there.
func (s *session) readFailed(ctx context.Context, err error) {
	switch {
	case ctx.Err() != nil, s.draining() && errors.Is(err, os.ErrDeadlineExceeded):
		s.log.Info("closing connection: server shutting down")
		s.finalReply(replyShutdown)
	case errors.Is(err, errLineTooLong):
		s.log.Info("closing connection: line too long", "limit", maxLine)
		s.write(replyTooLong)
		s.linger()
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.log.Info("closing connection: no login within the pre-auth timeout",
			"timeout", s.srv.opts.PreAuthTimeout)
		s.finalReply(replyTimeout)
		s.linger()
	default:
		// EOF or reset: the client hung up, which is never an error here.
		s.log.Debug("client closed the connection", "err", err)
	}
}

// write sends a reply unless an earlier write failed.
func (s *session) write(reply string) {
	if s.writeErr != nil {
		return
	}
	if _, err := io.WriteString(s.rw, reply); err != nil {
		s.writeErr = err
		s.log.Debug("writing to client", "err", err)
	}
}

// fail sends an -ERR reply and counts it towards maxErrors.
func (s *session) fail(reply string) {
	s.errors++
	s.write(reply)
}

// finalReply writes a last reply after the pre-auth deadline has passed.
func (s *session) finalReply(reply string) {
	if err := s.conn.SetWriteDeadline(time.Now().Add(finalWriteTimeout)); err != nil {
		return
	}
	s.write(reply)
}

// linger half-closes the connection after the last reply and discards what
// the client still sends, bounded by lingerBytes and lingerTimeout, so that
// the caller's close does not reset the connection before the client read
// the reply.
func (s *session) linger() {
	if s.writeErr != nil {
		return
	}
	if s.tls != nil {
		_ = s.tls.CloseWrite() // close_notify
	}
	if cw, ok := s.conn.Conn.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil {
			return
		}
	}
	if err := s.conn.SetReadDeadline(time.Now().Add(lingerTimeout)); err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(s.conn.Conn, lingerBytes))
}
