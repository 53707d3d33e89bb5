package imapfront

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
	proxy.AuditLogin(ctx, s.log, proxy.LoginAudit{Result: proxy.LoginSuccess, Login: acct.Login,
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
		Idle: s.srv.opts.IdleTimeout, Drain: s.c.Drain, Farewell: &farewell{}})
	return false
}

// traceUpstream wraps an upstream connection for the protocol trace.
func (s *session) traceUpstream(conn net.Conn) net.Conn {
	return s.c.Traced(conn, proxy.TracePeerUpstream, &traceRedactor{})
}

// loginFailed answers a failed login, logs it and reports whether the
// session goes on. acct is the account when the local check passed. The
// audit line carries why: the cause and the fix, from package diagnose.
func (s *session) loginFailed(ctx context.Context, tag, login string, acct proxy.Account, err error) bool {
	c := classify(err)
	attrs := []slog.Attr{slog.Any("err", err)}
	if text, ok := why(err, acct); ok {
		attrs = append(attrs, slog.String("why", text))
	}
	proxy.AuditLogin(ctx, s.log, proxy.LoginAudit{Result: c.result, Login: login, Identity: acct.Identity,
		Reason: c.reason, Attrs: attrs})
	reply := replyUnavailable
	if c.authFailed {
		reply = replyAuthFailed
	}
	_ = s.c.SetWriteDeadline(time.Now().Add(replyWriteTimeout))
	if s.writeLine(tag+" "+reply) != nil {
		return false
	}
	return s.countFailure()
}

// failure is how a failed login is answered and logged.
type failure struct {
	authFailed bool   // NO [AUTHENTICATIONFAILED]; otherwise NO [UNAVAILABLE]
	result     string // audit result: proxy.LoginFailure (cannot succeed as is) or proxy.LoginError
	reason     string // short cause for the log; the audit line's why says more
}

// classify maps a login error to the client's reply, with errors.Is/As only.
// Throttling is answered as a temporary failure: the client should come back
// later, and a password guesser learns nothing new.
func classify(err error) failure {
	switch {
	case errors.Is(err, proxy.ErrBadCredentials):
		return failure{authFailed: true, result: proxy.LoginFailure, reason: "bad local credentials"}
	case errors.Is(err, proxy.ErrThrottled):
		return failure{result: proxy.LoginFailure, reason: "throttled after failed logins"}
	case errors.Is(err, tokens.ErrNeedsLogin):
		return failure{authFailed: true, result: proxy.LoginFailure, reason: "token needs a new login"}
	case errors.Is(err, tokens.ErrConfiguration):
		return failure{authFailed: true, result: proxy.LoginFailure, reason: "identity provider rejected the configuration"}
	case errors.Is(err, errNotConnected):
		return failure{authFailed: true, result: proxy.LoginFailure, reason: "upstream mailbox not reachable with this token"}
	case errors.Is(err, proxy.ErrUpstreamRejected):
		return failure{authFailed: true, result: proxy.LoginFailure, reason: "upstream rejected a freshly refreshed token"}
	}
	return failure{result: proxy.LoginError, reason: "temporary failure of the identity provider or upstream"}
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
