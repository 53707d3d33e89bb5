package pop3front

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"time"

	"github.com/xoauthd/xoauthd/proxy"
)

// Defaults for zero Options fields.
const (
	// DefaultPreAuthTimeout bounds the whole dialogue before login, including
	// the upstream login.
	DefaultPreAuthTimeout = 60 * time.Second
	// DefaultIdleTimeout ends a relayed session after this long without
	// traffic in either direction.
	DefaultIdleTimeout = 31 * time.Minute
)

// finalWriteTimeout bounds a reply written after the pre-auth deadline has
// passed (the timeout notice) and the refusal written by Refuse.
const finalWriteTimeout = 5 * time.Second

// Replies that do not depend on the session.
const (
	greeting    = "+OK xoauthd POP3 ready\r\n"
	refusal     = "-ERR [SYS/TEMP] Too many connections, try again later\r\n"
	mechListing = "+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n" // AUTH without argument
)

// Options configures a Server. Gateway is required; zero durations take the
// defaults above.
type Options struct {
	// Gateway checks local logins, hands out tokens and dials the upstream.
	Gateway *proxy.Gateway
	// PreAuthTimeout bounds the whole dialogue before login, the local
	// credential check and the upstream login included (default 60s). It is
	// one deadline, not an idle timer: a client that keeps sending commands
	// without logging in is disconnected too.
	PreAuthTimeout time.Duration
	// IdleTimeout ends a relayed session without traffic (default 31m).
	IdleTimeout time.Duration

	// TLS, when set, offers STLS (RFC 2595 §4), or with ImplicitTLS starts
	// every connection with a TLS handshake (POP3S, port 995 style).
	TLS *tls.Config
	// ImplicitTLS: TLS from the first byte; TLS must be set.
	ImplicitTLS bool
	// AllowPlaintextLogin accepts USER, PASS and AUTH before STLS when TLS
	// is set. Without it CAPA lists only STLS of the login commands before
	// TLS, and a login is refused before any credential check. Set it for
	// loopback listeners (the password does not leave the machine) or where
	// allow_plaintext is configured. Without TLS, logins are always accepted.
	AllowPlaintextLogin bool
}

// Server is the POP3 front. It implements proxy.Handler; one Server serves
// any number of connections concurrently and holds no per-connection state.
type Server struct {
	opts Options
	// CAPA replies, built once by New: over TLS or without local TLS
	// (capa); before STLS with logins allowed (capaSTLS) or not
	// (capaSTLSOnly).
	capa, capaSTLS, capaSTLSOnly string
}

var _ proxy.Handler = (*Server)(nil)

// New returns a Server for opts, filling in defaults.
func New(opts Options) *Server {
	if opts.PreAuthTimeout <= 0 {
		opts.PreAuthTimeout = DefaultPreAuthTimeout
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	s := &Server{opts: opts}
	caps := s.capabilities()
	s.capa = capaReply(caps)
	s.capaSTLS = capaReply(append(caps, "STLS"))
	var noLogin []string
	for _, c := range caps {
		if c != "USER" && !strings.HasPrefix(c, "SASL ") {
			noLogin = append(noLogin, c)
		}
	}
	s.capaSTLSOnly = capaReply(append(noLogin, "STLS"))
	return s
}

// capabilities lists what CAPA announces before login (RFC 2449 §6). TOP and
// UIDL are the upstream's commands after login, which the relay carries;
// PIPELINING holds because commands are read in order from one buffered
// reader and whatever follows PASS or AUTH is passed on after the login.
func (s *Server) capabilities() []string {
	return []string{
		"USER",
		"SASL PLAIN LOGIN",
		"RESP-CODES",
		"AUTH-RESP-CODE",
		"TOP",
		"UIDL",
		"PIPELINING",
		"IMPLEMENTATION xoauthd",
	}
}

// capaReply renders a multi-line CAPA response.
func capaReply(caps []string) string {
	b := []byte("+OK Capability list follows\r\n")
	for _, c := range caps {
		b = append(b, c...)
		b = append(b, "\r\n"...)
	}
	return string(append(b, ".\r\n"...))
}

// ServeConn runs one client session: the pre-auth dialogue and, after a
// successful login, the relay. It returns when the session has ended; the
// caller closes c.
func (s *Server) ServeConn(ctx context.Context, c *proxy.Conn) {
	newSession(s, c).serve(ctx)
}

// Refuse tells a client over the listener's connection limit to come back
// later (RFC 3206 SYS/TEMP); the caller closes c.
// With implicit TLS nothing is written: a refusal is not worth a handshake
// under load, and plaintext would only be garbage to the client.
func (s *Server) Refuse(c net.Conn) {
	if s.opts.ImplicitTLS {
		return
	}
	if err := c.SetWriteDeadline(time.Now().Add(finalWriteTimeout)); err != nil {
		return
	}
	_, _ = io.WriteString(c, refusal)
}
