package pop3front

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/xoauthd/xoauthd/proxy"
)

// replyLoggedIn answers a successful login; failureReply answers the others.
const replyLoggedIn = "+OK Logged in.\r\n"

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
	gw.AuditLogin(ctx, s.log, proxy.LoginAudit{Result: proxy.LoginSuccess, Login: login, Identity: acct.Identity,
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
		s.log.Debug("clearing pre-auth deadline", "err", err)
		return
	}
	// The session keeps no reference to its reader during the relay, so an
	// idle relayed session does not pin the pre-auth line buffer.
	r := s.r
	s.r = nil
	proxy.Relay(ctx, s.log, s.client, r, up.conn, up.r, proxy.RelayOptions{
		Idle: s.srv.opts.IdleTimeout, Drain: s.conn.Drain, Farewell: &farewell{},
		Meter: s.srv.opts.Gateway.Meter})
}

// loginUpstream is the session's proxy.LoginFunc: loginUpstream with the
// upstream dialogue in the protocol trace.
func (s *session) loginUpstream(ctx context.Context, conn net.Conn, d *proxy.Dialer, acct proxy.Account, token string) (*upstream, error) {
	return loginUpstreamTraced(ctx, conn, d, acct, token, func(c net.Conn) net.Conn {
		return s.conn.Traced(c, proxy.TracePeerUpstream, &traceRedactor{})
	})
}

// loginFailed writes the audit line for a failed login and the client's
// reply. The policy (proxy.Classify) decides the class of reply and the
// audit line; the reply carries an RFC 2449/3206 response code.
func (s *session) loginFailed(ctx context.Context, mech, login string, acct proxy.Account, err error) {
	f := s.srv.opts.Gateway.LoginFailed(ctx, s.log, login, acct, err, slog.String("mech", mech))
	s.fail(failureReply(f))
}

// failureReply is the -ERR line for a failed login: [AUTH] for the
// credentials (RFC 3206 §5), [SYS/PERM] when an administrator must act and
// [SYS/TEMP] when it may pass (RFC 3206 §4), [IN-USE] when the account has
// as many sessions as allowed (RFC 2449 §8.1.2).
func failureReply(f proxy.Failure) string {
	code := proxy.ByClass(f.Class, "SYS/TEMP", "AUTH", "SYS/PERM", "IN-USE")
	return "-ERR [" + code + "] " + f.Message + ".\r\n"
}
