package imapfront

import (
	"context"
	"errors"
	"log/slog"

	"github.com/xoauthd/xoauthd/proxy"
)

// Replies about local TLS.
const (
	replyBeginTLS      = "OK Begin TLS negotiation now"
	replyLoginDisabled = "NO [PRIVACYREQUIRED] Logins need TLS on this port: use STARTTLS first."
	// replyNoLocalTLS answers STARTTLS on a listener without tls: (RFC 9051
	// §6.2.1 lists BAD for a command the server does not take now).
	replyNoLocalTLS = "BAD STARTTLS is not available: local TLS is not configured on this port"
)

// whyLoginDisabled is the cause and the fix of a login refused before
// STARTTLS, for the log.
const whyLoginDisabled = "The mail client logs in without TLS on a port that needs TLS for logins. " +
	"Set it to use STARTTLS (or SSL/TLS on a port with implicit TLS), or set allow_plaintext: true on this server if the network is trusted."

// errNoTLSConfig means ImplicitTLS was set without a TLS configuration (a
// wiring bug): no connection is served in plaintext instead.
var errNoTLSConfig = errors.New("imap front has implicit TLS but no TLS configuration: no connection can be served")

// caps returns the capabilities to announce now: STARTTLS while it can be
// started, LOGINDISABLED instead of the mechanisms while logins wait for
// TLS (RFC 3501 §6.2.3, §7.2.1; RFC 9051 §6.2 says not to announce
// mechanisms that cannot be used).
func (s *session) caps() string {
	c := capsBase
	if s.tls == nil && s.srv.opts.TLS != nil {
		c += " STARTTLS"
	}
	if !s.loginAllowed() {
		return c + " LOGINDISABLED"
	}
	return c + " " + capsAuth
}

// loginAllowed reports whether LOGIN and AUTHENTICATE are accepted now:
// over TLS, without local TLS configured, or when plaintext logins are
// allowed.
func (s *session) loginAllowed() bool {
	return s.tls != nil || s.srv.opts.TLS == nil || s.srv.opts.AllowPlaintextLogin
}

// loginDisabled refuses a login before STARTTLS without looking at the
// credentials, and reports whether the session goes on.
func (s *session) loginDisabled(ctx context.Context, cmd *command) bool {
	login := ""
	if cmd.name == "LOGIN" && len(cmd.args) > 0 && cmd.args[0].isString() {
		login = cmd.args[0].s
	}
	s.srv.opts.Gateway.AuditLogin(ctx, s.log, proxy.LoginAudit{Result: proxy.LoginFailure, Login: login,
		Reason: "login before STARTTLS on a listener that needs TLS for logins",
		Attrs:  []slog.Attr{slog.String("why", whyLoginDisabled)}})
	if s.writeLine(cmd.tag+" "+replyLoginDisabled) != nil {
		return false
	}
	return s.countFailure()
}

// startTLS runs STARTTLS (RFC 3501 §6.2.1), or refuses it on a listener
// without local TLS, and reports whether the session goes on. Whatever the client sent after the command and before the
// handshake is discarded: it came in plaintext and must not be taken as
// sent over TLS (command injection, CVE-2011-0411).
func (s *session) startTLS(cmd *command) bool {
	switch {
	case s.srv.opts.TLS == nil:
		// Some clients (fetchmail) try STARTTLS unannounced: say why it is
		// refused and keep the session, so they can go on without TLS.
		return s.writeLine(cmd.tag+" "+replyNoLocalTLS) == nil
	case s.tls != nil:
		return s.badf(cmd.tag, "TLS is already active")
	case len(cmd.args) != 0:
		return s.badf(cmd.tag, "STARTTLS takes no arguments")
	}
	if s.writeLine(cmd.tag+" "+replyBeginTLS) != nil {
		return false
	}
	proxy.DiscardBeforeTLS(s.log, s.br, "STARTTLS")
	return s.handshake()
}

// handshake runs the server side of a TLS handshake on the accepted
// connection, within the pre-auth deadline, and makes the TLS connection
// the session's. It reports whether it succeeded.
func (s *session) handshake() bool {
	if s.srv.opts.TLS == nil {
		s.log.Error("closing connection", "err", errNoTLSConfig)
		return false
	}
	tc, err := proxy.ServerHandshake(s.log, s.c.Conn, s.srv.opts.TLS)
	if err != nil {
		return false
	}
	s.tls = tc
	s.useClient(tc)
	return true
}
