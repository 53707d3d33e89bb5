package imapfront

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/xoauthd/xoauthd/proxy"
)

// Defaults and bounds of a session.
const (
	// DefaultPreAuthTimeout bounds the whole dialogue before login.
	DefaultPreAuthTimeout = 60 * time.Second
	// DefaultIdleTimeout ends a relayed session when nothing moved for this
	// long; above RFC 9051's 30 minutes so that IDLE survives.
	DefaultIdleTimeout = 31 * time.Minute
	// maxBadCommands ends a session after this many BAD replies.
	maxBadCommands = 3
	// maxAuthFailures ends a session after this many failed logins.
	maxAuthFailures = 3
	// byeWriteTimeout bounds writing the final BYE after a deadline passed.
	byeWriteTimeout = 2 * time.Second
	// replyWriteTimeout bounds writing the reply to a login, which may
	// finish after the pre-auth deadline.
	replyWriteTimeout = 10 * time.Second
	// lingerTimeout and maxLingerBytes bound reading what a client still
	// sends after a BYE, so that closing does not reset the connection
	// before the client has read the BYE.
	lingerTimeout  = 2 * time.Second
	maxLingerBytes = 64 * 1024
	// upstreamLoginTimeout bounds the token, dial and upstream login of one
	// client login, retry included.
	upstreamLoginTimeout = 60 * time.Second
)

// Capabilities before login (RFC 3501, 4959, 7888, 2971): capsBase always,
// then STARTTLS while local TLS can still be started, then either the
// login mechanisms or LOGINDISABLED (RFC 3501 §6.2.3) when logins must wait
// for TLS (see session.caps).
const (
	capsBase    = "IMAP4rev1 SASL-IR LITERAL+ ID"
	capsAuth    = "AUTH=PLAIN AUTH=LOGIN"
	preAuthCaps = capsBase + " " + capsAuth // without local TLS
)

// Replies of the pre-auth dialogue.
const (
	greeting   = "* OK [CAPABILITY " + preAuthCaps + "] xoauthd ready" // without local TLS
	replyBusy  = "* BYE [UNAVAILABLE] Too many connections, try again later"
	autologout = "Autologout; too slow to log in"
)

// Options configure a Server.
type Options struct {
	// Gateway maps local logins to accounts, tokens and upstream dialers.
	Gateway *proxy.Gateway
	// PreAuthTimeout bounds the whole dialogue before login; 0 means
	// DefaultPreAuthTimeout.
	PreAuthTimeout time.Duration
	// IdleTimeout ends a relayed session after this long without traffic;
	// 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// TLS, when set, offers STARTTLS (RFC 3501 §6.2.1), or with ImplicitTLS
	// starts every connection with a TLS handshake (IMAPS, port 993 style).
	TLS *tls.Config
	// ImplicitTLS: TLS from the first byte; TLS must be set.
	ImplicitTLS bool
	// AllowPlaintextLogin accepts LOGIN and AUTHENTICATE before STARTTLS
	// when TLS is set. Without it the greeting announces LOGINDISABLED and
	// a login before STARTTLS is refused with NO [PRIVACYREQUIRED], before
	// any credential check. Set it for loopback listeners (the password
	// does not leave the machine) or where allow_plaintext is configured.
	// Without TLS there is nothing to wait for: logins are always accepted.
	AllowPlaintextLogin bool
}

// Server is the IMAP front. It implements proxy.Handler.
type Server struct {
	opts Options
}

var _ proxy.Handler = (*Server)(nil)

// New returns a Server with the defaults filled in.
func New(opts Options) *Server {
	if opts.PreAuthTimeout <= 0 {
		opts.PreAuthTimeout = DefaultPreAuthTimeout
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	return &Server{opts: opts}
}

// Refuse tells a connection over the listener's limit to come back later.
// With implicit TLS nothing is written: a refusal is not worth a handshake
// under load, and plaintext would only be garbage to the client.
func (s *Server) Refuse(c net.Conn) {
	if s.opts.ImplicitTLS {
		return
	}
	_ = c.SetWriteDeadline(time.Now().Add(byeWriteTimeout))
	_, _ = io.WriteString(c, replyBusy+"\r\n")
}

// ServeConn runs one client session: the pre-auth dialogue, then after a
// good login the relay to the upstream. The caller closes c.
func (s *Server) ServeConn(ctx context.Context, c *proxy.Conn) {
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sess := &session{srv: s, c: c, log: log, red: &traceRedactor{}}
	sess.useClient(c.Conn)
	sess.run(ctx)
}

// useClient makes conn (the accepted connection, or TLS over it) the one
// the session reads and writes. The trace (when on) sees the dialogue up to
// the login; the relay reads conn itself. Buffered input of the previous
// connection is dropped.
func (s *session) useClient(conn net.Conn) {
	s.client = conn
	s.rw = s.c.Traced(conn, proxy.TracePeerClient, s.red)
	s.br = bufio.NewReaderSize(s.rw, maxLineLength)
	s.r = cmdReader{br: s.br, cont: func() error { return s.write(continueLiteral) }}
}

// session is one client connection before login.
type session struct {
	srv    *Server
	c      *proxy.Conn
	log    *slog.Logger
	red    *traceRedactor // the trace's redactor, kept across STARTTLS
	tls    *tls.Conn      // set by a completed TLS handshake; nil before
	client net.Conn       // c.Conn, or tls once set; what the relay gets
	rw     net.Conn       // client, wrapped by the protocol trace when it is on
	br     *bufio.Reader  // reads rw; handed to the relay with what it holds
	r      cmdReader      // reads commands from br

	bad       int  // BAD replies so far
	failures  int  // failed logins so far
	commanded bool // a command was read; set after the first one
	byeSent   bool // a BYE was written; set by bye
}

// run is the pre-auth loop.
func (s *session) run(ctx context.Context) {
	if err := s.c.SetDeadline(time.Now().Add(s.srv.opts.PreAuthTimeout)); err != nil {
		return
	}
	stopCtx := context.AfterFunc(ctx, func() { _ = s.c.SetDeadline(time.Now()) })
	// A shutdown ends the dialogue at once: a waiting read fails and the
	// client gets a BYE (readFailed). A write is not cut.
	stopDrain := s.c.OnDrain(func() { _ = s.c.SetReadDeadline(time.Now()) })
	stop := func() bool {
		stopDrain()
		return stopCtx()
	}
	defer stop()
	if s.srv.opts.ImplicitTLS && !s.handshake() {
		return
	}
	if err := s.writeLine("* OK [CAPABILITY " + s.caps() + "] xoauthd ready"); err != nil {
		return
	}
	s.loop(ctx, stop)
	if s.byeSent && ctx.Err() == nil && !s.draining() {
		s.linger()
	}
}

// loop reads and runs commands until the session ends.
func (s *session) loop(ctx context.Context, stop func() bool) {
	for {
		if s.draining() {
			s.bye(byeShutdown)
			return
		}
		cmd, err := s.r.read()
		if err != nil {
			if !s.readFailed(ctx, err) {
				return
			}
			continue
		}
		first := !s.commanded
		s.commanded = true
		if s.draining() {
			s.bye(byeShutdown)
			return
		}
		if !s.dispatch(ctx, cmd, first, stop) {
			return
		}
	}
}

// dispatch runs one command and reports whether the session goes on.
func (s *session) dispatch(ctx context.Context, cmd *command, first bool, stop func() bool) bool {
	switch cmd.name {
	case "CAPABILITY":
		return s.capability(cmd)
	case "NOOP":
		return s.noop(cmd)
	case "LOGOUT":
		return s.logout(cmd)
	case "ID":
		return s.id(cmd)
	case "STARTTLS":
		return s.startTLS(cmd)
	case "LOGIN", "AUTHENTICATE":
		if !s.loginAllowed() {
			return s.loginDisabled(ctx, cmd)
		}
		user, pass, ok, goOn := s.credentials(cmd)
		if !ok {
			return goOn
		}
		return s.login(ctx, cmd.tag, user, pass, stop)
	}
	if first {
		// An unknown first command is likely another protocol talking to
		// us (a cross-protocol attack): do not answer it at length.
		s.bye("Unknown command")
		return false
	}
	return s.badf(cmd.tag, "Unknown command or not allowed before login")
}

// readFailed handles an error from reading a command and reports whether
// the session goes on.
func (s *session) readFailed(ctx context.Context, err error) bool {
	var pe *parseError
	switch {
	case errors.As(err, &pe):
		if pe.fatal || !s.commanded {
			s.bye(pe.msg)
			return false
		}
		tag := pe.tag
		if tag == "" {
			tag = "*"
		}
		if pe.code != "" {
			return s.badf(tag, "[%s] %s", pe.code, pe.msg)
		}
		return s.badf(tag, "%s", pe.msg)
	case ctx.Err() != nil, s.draining() && errors.Is(err, os.ErrDeadlineExceeded):
		s.bye(byeShutdown)
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.log.Debug("pre-auth timeout", "timeout", s.srv.opts.PreAuthTimeout)
		s.bye(autologout)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		// The client hung up: not an error.
	default:
		s.log.Debug("reading command", "err", err)
	}
	return false
}

// badf answers tag with BAD and reports whether the session goes on: after
// maxBadCommands it ends with BYE.
func (s *session) badf(tag, format string, args ...any) bool {
	if err := s.writeLine(tag + " BAD " + fmt.Sprintf(format, args...)); err != nil {
		return false
	}
	if s.bad++; s.bad >= maxBadCommands {
		s.bye("Too many errors")
		return false
	}
	return true
}

// bye sends an untagged BYE, with a fresh short deadline since the old one
// may be what ended the session.
func (s *session) bye(text string) {
	_ = s.c.SetWriteDeadline(time.Now().Add(byeWriteTimeout))
	_ = s.writeLine("* BYE " + text)
	s.byeSent = true
}

// draining reports whether the server is shutting down.
func (s *session) draining() bool {
	select {
	case <-s.c.Drain:
		return true
	default:
		return false
	}
}

// linger half-closes the connection after a BYE and reads what the client
// still sends, within bounds, so that the close does not reset the
// connection before the client has read the BYE.
func (s *session) linger() {
	if s.tls != nil {
		_ = s.tls.CloseWrite() // close_notify
	}
	cw, ok := s.c.Conn.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	if s.c.SetReadDeadline(time.Now().Add(lingerTimeout)) != nil {
		return
	}
	_, _ = io.CopyN(io.Discard, s.c.Conn, maxLingerBytes)
}

// writeLine writes one response line with CRLF.
func (s *session) writeLine(line string) error {
	return s.write(line + "\r\n")
}

func (s *session) write(text string) error {
	_, err := io.WriteString(s.rw, text)
	return err
}
