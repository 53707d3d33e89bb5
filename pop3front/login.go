package pop3front

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/xoauthd/xoauthd/internal/diagnose"
	"github.com/xoauthd/xoauthd/proxy"
	"github.com/xoauthd/xoauthd/tokens"
)

// Replies to a login attempt (RFC 3206 response codes). The text is generic:
// it never says whether the login exists or what went wrong upstream.
const (
	replyLoggedIn   = "+OK Logged in.\r\n"
	replyAuthFailed = "-ERR [AUTH] Authentication failed.\r\n"
	replyThrottled  = "-ERR [SYS/TEMP] Too many failed logins, try again later.\r\n"
	replyTemporary  = "-ERR [SYS/TEMP] Temporary failure, try again later.\r\n"
)

// login checks the local credentials, logs in upstream and, on success,
// relays the session until it ends. It reports whether the session is over.
// Everything from here to the relay is bounded by the pre-auth deadline.
func (s *session) login(ctx context.Context, mech, login, password string) (done bool) {
	lctx, cancel := context.WithDeadline(ctx, s.deadline)
	defer cancel()
	gw := s.srv.opts.Gateway
	acct, err := gw.Auth.Authenticate(lctx, login, password, s.conn.Remote)
	if err != nil {
		s.loginFailed(ctx, mech, login, proxy.Account{}, err)
		return s.writeErr != nil
	}
	up, err := proxy.Connect(lctx, gw, acct, s.loginUpstream)
	if err != nil {
		s.loginFailed(ctx, mech, login, acct, err)
		return s.writeErr != nil
	}
	defer func() { _ = up.conn.Close() }()
	proxy.AuditLogin(ctx, s.log, proxy.LoginAudit{Result: proxy.LoginSuccess, Login: login, Identity: acct.Identity,
		Attrs: []slog.Attr{slog.String("mech", mech), slog.String("mailbox", acct.Mailbox)}})
	s.log = s.log.With("login", login, "identity", acct.Identity)
	s.relay(ctx, up)
	return true
}

// relay tells the client it is logged in and pumps bytes until the session
// ends. The client's pipelined commands after PASS or AUTH are still in s.r;
// proxy.Relay sends them upstream first.
func (s *session) relay(ctx context.Context, up *upstream) {
	if !s.stopCancel() {
		// ctx was cancelled after the login: the server is shutting down.
		s.finalReply(replyShutdown)
		return
	}
	s.write(replyLoggedIn)
	if s.writeErr != nil {
		return
	}
	if err := s.conn.SetDeadline(time.Time{}); err != nil {
		s.log.Debug("clearing pre-auth deadline", "error", err)
		return
	}
	// The session keeps no reference to its reader during the relay, so an
	// idle relayed session does not pin the pre-auth line buffer.
	r := s.r
	s.r = nil
	proxy.Relay(ctx, s.log, s.client, r, up.conn, up.r, proxy.RelayOptions{
		Idle: s.srv.opts.IdleTimeout, Drain: s.conn.Drain, Farewell: &farewell{}})
}

// loginUpstream is the session's proxy.LoginFunc: loginUpstream with the
// upstream dialogue in the protocol trace.
func (s *session) loginUpstream(ctx context.Context, conn net.Conn, d *proxy.Dialer, acct proxy.Account, token string) (*upstream, error) {
	return loginUpstreamTraced(ctx, conn, d, acct, token, func(c net.Conn) net.Conn {
		return s.conn.Traced(c, proxy.TracePeerUpstream, &traceRedactor{})
	})
}

// loginFailed writes the audit line for a failed login and the client's
// reply. The audit line carries why: the cause and the fix, from package
// diagnose.
func (s *session) loginFailed(ctx context.Context, mech, login string, acct proxy.Account, err error) {
	f := classify(err)
	attrs := []slog.Attr{slog.String("mech", mech), slog.Any("err", err)}
	if text, ok := why(err, acct); ok {
		attrs = append(attrs, slog.String("why", text))
	}
	proxy.AuditLogin(ctx, s.log, proxy.LoginAudit{Result: f.result, Login: login, Identity: acct.Identity,
		Reason: f.reason, Attrs: attrs})
	s.fail(f.reply)
}

// failure is how a failed login is answered and audited.
type failure struct {
	reply  string // to the client
	result string // audit result: failure (the login was refused) or error
	reason string // short cause for the audit line
}

// classify maps a login error to its reply: the credentials or the token are
// not good ([AUTH], so the client asks its user) or something is down
// ([SYS/TEMP], so it tries again later). Throttling is temporary: the client
// should come back later, not ask for a new password.
func classify(err error) failure {
	switch {
	case errors.Is(err, proxy.ErrBadCredentials):
		return failure{replyAuthFailed, "failure", "invalid local credentials"}
	case errors.Is(err, errAuthzid):
		return failure{replyAuthFailed, "failure", "unsupported authorization identity"}
	case errors.Is(err, proxy.ErrThrottled):
		return failure{replyThrottled, "failure", "too many failed logins"}
	case errors.Is(err, tokens.ErrNeedsLogin):
		return failure{replyAuthFailed, "failure", "token needs a new login"}
	case errors.Is(err, proxy.ErrUpstreamRejected):
		return failure{replyAuthFailed, "failure", "upstream rejected a fresh token"}
	case errors.Is(err, proxy.ErrUpstreamUnavailable):
		return failure{replyTemporary, "error", "upstream unavailable"}
	default:
		return failure{replyTemporary, "error", "temporary failure"}
	}
}

// why returns the cause and the fix of a failed login, in plain words for
// the log: what package diagnose knows of the failure (an upstream reply, a
// token error, a TLS or network failure), or that it does not know the
// upstream's reply. ok is false when there is nothing to explain beyond the
// reason (wrong local password, throttling).
func why(err error, acct proxy.Account) (text string, ok bool) {
	e, known := diagnose.Explain(err, diagnose.Account{Identity: acct.Identity, Mailbox: acct.Mailbox})
	if !known && diagnose.ReplyOf(err) == nil {
		return "", false
	}
	return e.String(), true
}
