package imapfront

import (
	"context"
	"errors"
	"time"

	"github.com/xoauthd/xoauthd/proxy"
	"github.com/xoauthd/xoauthd/tokens"
)

// fixNotConnected is what to do when Exchange accepts the token but cannot
// open the mailbox ("User is authenticated but not connected").
const fixNotConnected = "the token is good but the mailbox cannot be opened with it: check that " +
	"the account's mailbox address (user=) is right, that the identity has FullAccess on it " +
	"(Add-MailboxPermission -AccessRights FullAccess), that the mailbox exists and is licensed, " +
	"and that IMAP is enabled for it (Set-CASMailbox -ImapEnabled $true)"

// errNoGateway means the front was built without a gateway (a wiring bug).
var errNoGateway = errors.New("imap front has no gateway: no login can succeed")

// login checks the local credentials, logs in upstream and relays the
// session. It reports whether the pre-auth dialogue goes on (after a failed
// login); after a relayed session it returns false.
func (s *session) login(ctx context.Context, tag, user, pass string, stop func() bool) bool {
	gw := s.srv.opts.Gateway
	if gw == nil || gw.Auth == nil {
		return s.loginFailed(tag, user, "", errNoGateway)
	}
	acct, err := gw.Auth.Authenticate(ctx, user, pass, s.c.Remote)
	if err != nil {
		return s.loginFailed(tag, user, "", err)
	}
	log := s.log.With("login", acct.Login, "identity", acct.Identity)
	upCtx, cancel := context.WithTimeout(ctx, upstreamLoginTimeout)
	up, err := proxy.Connect(upCtx, gw, acct, loginUpstream(tag, log))
	cancel()
	if err != nil {
		return s.loginFailed(tag, acct.Login, acct.Identity, err)
	}
	defer up.conn.Close()
	s.log.Info("login", "result", "success", "proto", "imap", "login", acct.Login,
		"identity", acct.Identity, "mailbox", acct.Mailbox)

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
	proxy.Relay(ctx, log, s.c.Conn, s.br, up.conn, up.br, s.srv.opts.IdleTimeout)
	return false
}

// loginFailed answers a failed login, logs it and reports whether the
// session goes on.
func (s *session) loginFailed(tag, login, identity string, err error) bool {
	c := classify(err)
	attrs := []any{"result", c.result, "proto", "imap", "login", login, "identity", identity,
		"reason", c.reason, "err", err}
	if c.fix != "" {
		attrs = append(attrs, "fix", c.fix)
	}
	s.log.Info("login", attrs...)
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
	result     string // audit result: "failure" (the login cannot succeed as is) or "error"
	reason     string // short cause for the log
	fix        string // what to do, when known
}

// classify maps a login error to the client's reply, with errors.Is/As only.
// Throttling is answered as a temporary failure: the client should come back
// later, and a password guesser learns nothing new.
func classify(err error) failure {
	var nle *tokens.NeedsLoginError
	var cfg *tokens.ConfigError
	switch {
	case errors.Is(err, proxy.ErrBadCredentials):
		return failure{authFailed: true, result: "failure", reason: "bad local credentials"}
	case errors.Is(err, proxy.ErrThrottled):
		return failure{result: "failure", reason: "throttled after failed logins"}
	case errors.As(err, &nle):
		return failure{authFailed: true, result: "failure", reason: "token needs a new login", fix: nle.Fix}
	case errors.Is(err, tokens.ErrNeedsLogin):
		return failure{authFailed: true, result: "failure", reason: "token needs a new login"}
	case errors.As(err, &cfg):
		return failure{authFailed: true, result: "failure", reason: "identity provider rejected the configuration", fix: cfg.Fix}
	case errors.Is(err, tokens.ErrConfiguration):
		return failure{authFailed: true, result: "failure", reason: "identity provider rejected the configuration"}
	case errors.Is(err, errNotConnected):
		return failure{authFailed: true, result: "failure", reason: "upstream mailbox not reachable with this token", fix: fixNotConnected}
	case errors.Is(err, proxy.ErrUpstreamRejected):
		return failure{authFailed: true, result: "failure", reason: "upstream rejected a freshly refreshed token",
			fix: "check that the identity may use IMAP on this mailbox (scopes, consent, IMAP enabled for the mailbox)"}
	}
	return failure{result: "error", reason: "temporary failure of the identity provider or upstream"}
}
