package imapfront

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/xoauthd/xoauthd/proxy"
)

// errNoGateway means the front was built without a gateway (a wiring bug).
var errNoGateway = errors.New("imap front has no gateway: no login can succeed")

// login checks the local credentials, logs in upstream and relays the
// session. It reports whether the pre-auth dialogue goes on (after a failed
// login); after a relayed session it returns false.
func (s *session) login(ctx context.Context, tag, user, pass string, stop func() bool) bool {
	gw := s.srv.opts.Gateway
	if gw == nil || gw.Auth == nil {
		return s.loginFailed(ctx, tag, user, proxy.Account{}, errNoGateway)
	}
	acct, err := gw.Auth.Authenticate(ctx, user, pass, s.c.Remote)
	if err != nil {
		return s.loginFailed(ctx, tag, user, proxy.Account{}, err)
	}
	log := s.log.With("login", acct.Login, "identity", acct.Identity)
	upCtx, cancel := context.WithTimeout(ctx, upstreamLoginTimeout)
	up, err := proxy.Connect(upCtx, gw, acct, loginUpstreamTraced(tag, log, s.traceUpstream))
	cancel()
	if err != nil {
		return s.loginFailed(ctx, tag, acct.Login, acct, err)
	}
	defer up.conn.Close()
	gw.AuditLogin(ctx, s.log, proxy.LoginAudit{Result: proxy.LoginSuccess, Login: acct.Login,
		Identity: acct.Identity, Attrs: []slog.Attr{slog.String("mailbox", acct.Mailbox)}})

	reply := tag + " OK Logged in"
	if up.caps != "" {
		reply = tag + " OK [CAPABILITY " + up.caps + "] Logged in"
	}
	_ = s.c.SetWriteDeadline(time.Now().Add(replyWriteTimeout))
	if err := s.writeLine(reply); err != nil {
		return false
	}
	// The relay owns the deadlines from here; ctx ends it.
	stop()
	if err := s.c.SetDeadline(time.Time{}); err != nil {
		return false
	}
	// What the client pipelined after its login is still in s.br and what
	// the upstream sent after its last reply in up.br: Relay flushes both
	// before it copies.
	// The session keeps no reference to its reader during the relay, so an
	// idle relayed session does not pin the pre-auth line buffer.
	br := s.br
	s.br, s.r = nil, cmdReader{}
	proxy.Relay(ctx, log, s.client, br, up.conn, up.br, proxy.RelayOptions{
		Idle: s.srv.opts.IdleTimeout, Drain: s.c.Drain, Farewell: &farewell{}, Meter: gw.Meter})
	return false
}

// traceUpstream wraps an upstream connection for the protocol trace.
func (s *session) traceUpstream(conn net.Conn) net.Conn {
	return s.c.Traced(conn, proxy.TracePeerUpstream, &traceRedactor{})
}

// loginFailed answers a failed login, logs it and reports whether the
// session goes on. acct is the account when the local check passed. The
// policy (proxy.Classify) decides the class of reply and the audit line;
// the reply carries an RFC 5530 response code.
func (s *session) loginFailed(ctx context.Context, tag, login string, acct proxy.Account, err error) bool {
	f := s.srv.opts.Gateway.LoginFailed(ctx, s.log, login, acct, err)
	_ = s.c.SetWriteDeadline(time.Now().Add(replyWriteTimeout))
	if s.writeLine(tag+" "+failureReply(f)) != nil {
		return false
	}
	return s.countFailure()
}

// failureReply is the tagged reply's status and text for a failed login
// (RFC 5530 §3 response codes).
func failureReply(f proxy.Failure) string {
	code := proxy.ByClass(f.Class, "UNAVAILABLE", "AUTHENTICATIONFAILED", "CONTACTADMIN", "LIMIT")
	return "NO [" + code + "] " + f.Message + "."
}
