package pop3front

import (
	"context"
	"errors"
	"log/slog"

	"github.com/xoauthd/xoauthd/proxy"
)

// Replies about local TLS (RFC 2595 §4).
const (
	replyBeginTLS      = "+OK Begin TLS negotiation.\r\n"
	replyTLSActive     = "-ERR TLS is already active.\r\n"
	replyLoginDisabled = "-ERR Logins need TLS on this port: use STLS first.\r\n"
)

// whyLoginDisabled is the cause and the fix of a login refused before STLS,
// for the log.
const whyLoginDisabled = "The mail client logs in without TLS on a port that needs TLS for logins. " +
	"Set it to use STARTTLS/STLS (or SSL/TLS on a port with implicit TLS), or set allow_plaintext: true on this server if the network is trusted."

// errNoTLSConfig means ImplicitTLS was set without a TLS configuration (a
// wiring bug): no connection is served in plaintext instead.
var errNoTLSConfig = errors.New("pop3 front has implicit TLS but no TLS configuration: no connection can be served")

// capa returns the CAPA reply for now: STLS while TLS can be started, and
// no USER or SASL while logins wait for TLS.
func (s *session) capa() string {
	switch {
	case s.tls != nil || s.srv.opts.TLS == nil:
		return s.srv.capa
	case s.loginAllowed():
		return s.srv.capaSTLS
	}
	return s.srv.capaSTLSOnly
}

// loginAllowed reports whether USER, PASS and AUTH are accepted now: over
// TLS, without local TLS configured, or when plaintext logins are allowed.
func (s *session) loginAllowed() bool {
	return s.tls != nil || s.srv.opts.TLS == nil || s.srv.opts.AllowPlaintextLogin
}

// loginDisabled refuses a login command before STLS without looking at the
// credentials.
func (s *session) loginDisabled(ctx context.Context, cmd command) {
	login := ""
	switch cmd.verb {
	case cmdUSER:
		login = cmd.arg
	case cmdPASS:
		login, s.user = s.user, ""
	}
	s.srv.opts.Gateway.AuditLogin(ctx, s.log, proxy.LoginAudit{Result: proxy.LoginFailure, Login: login,
		Reason: "login before STLS on a listener that needs TLS for logins",
		Attrs:  []slog.Attr{slog.String("command", cmd.verb), slog.String("why", whyLoginDisabled)}})
	s.fail(replyLoginDisabled)
}

// startTLS runs STLS (RFC 2595 §4) and reports whether the session is over.
// Whatever the client sent after the command and before the handshake is
// discarded: it came in plaintext and must not be taken as sent over TLS
// (command injection, CVE-2011-0411).
func (s *session) startTLS(cmd command) (done bool) {
	switch {
	case s.tls != nil:
		s.fail(replyTLSActive)
		return s.writeErr != nil
	case cmd.hasArg:
		s.fail(replySyntax)
		return s.writeErr != nil
	}
	s.user = ""
	s.write(replyBeginTLS)
	if s.writeErr != nil {
		return true
	}
	proxy.DiscardBeforeTLS(s.log, s.r, "STLS")
	return !s.handshake()
}

// handshake runs the server side of a TLS handshake on the accepted
// connection, within the pre-auth deadline, and makes the TLS connection
// the session's. It reports whether it succeeded.
func (s *session) handshake() bool {
	if s.srv.opts.TLS == nil {
		s.log.Error("closing connection", "err", errNoTLSConfig)
		return false
	}
	tc, err := proxy.ServerHandshake(s.log, s.conn.Conn, s.srv.opts.TLS)
	if err != nil {
		return false
	}
	s.tls = tc
	s.useClient(tc)
	return true
}
