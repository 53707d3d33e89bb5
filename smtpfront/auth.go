package smtpfront

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/proxy"
	"github.com/xoauthd/xoauthd/tokens"
)

// AuthMechanisms implements smtp.AuthSession: PLAIN (RFC 4616) and LOGIN
// (what Outlook and many ERP systems use). go-smtp offers them only over TLS
// or with Options.AllowInsecureAuth.
func (s *session) AuthMechanisms() []string { return []string{sasl.Plain, sasl.Login} }

// Auth implements smtp.AuthSession. go-smtp passes the mechanism upper-cased.
func (s *session) Auth(mech string) (sasl.Server, error) {
	switch mech {
	case sasl.Plain:
		return newPlainServer(func(authz, user, password string) error {
			if authz != "" && authz != user {
				return s.loginRefused(user, mech, proxy.Account{}, errAuthzDiffers)
			}
			return s.login(user, password, mech)
		}), nil
	case sasl.Login:
		return newLoginServer(func(user, password string) error {
			return s.login(user, password, mech)
		}), nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// errAuthzDiffers: PLAIN with an authorization identity other than the login.
var errAuthzDiffers = fmt.Errorf("plain authorization identity differs from the login (acting as another user is not supported): %w", proxy.ErrBadCredentials)

// login checks the local credentials, takes a slot of the account's
// identity (waiting up to Options.UpstreamWait) and opens the upstream
// session. Every error is a reply for the client; the log says why.
func (s *session) login(login, password, mech string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.release != nil {
		return replyAlreadyAuthed
	}
	if s.cc.draining() {
		s.cc.hangUp("")
		return replyShuttingDown
	}
	gw := s.srv.opts.Gateway
	authCtx, cancel := context.WithTimeout(s.cc.ctx, loginTimeout)
	acct, err := gw.Auth.Authenticate(authCtx, login, password, s.cc.pc.Remote)
	cancel()
	if err != nil {
		return s.loginRefused(login, mech, proxy.Account{}, err)
	}
	if err := s.begin(acct, login, []slog.Attr{slog.String("mech", mech)}); err != nil {
		if err == replyTooManySessions {
			return err
		}
		return s.loginRefused(login, mech, acct, err)
	}
	return nil
}

// begin takes a slot of acct's identity (waiting up to
// Options.UpstreamWait), opens the upstream session and makes acct the
// session's account, with one audit line for success and for busy slots
// (audit adds to it). When every slot stayed busy it returns
// replyTooManySessions and the session ends; when the upstream session
// could not be opened it returns that error, not yet logged. The caller
// holds mu.
func (s *session) begin(acct proxy.Account, login string, audit []slog.Attr) error {
	release, err := s.srv.slots.acquire(s.cc.ctx, acct.Identity, s.srv.opts.UpstreamWait)
	if err != nil {
		proxy.AuditLogin(s.cc.ctx, s.log, proxy.LoginAudit{Result: proxy.LoginError, Login: login, Identity: acct.Identity,
			Reason: "every upstream session of this identity stayed in use", Attrs: append(audit,
				slog.Int("max_upstream_per_identity", s.srv.opts.MaxUpstreamPerIdentity),
				slog.String("waited", s.srv.opts.UpstreamWait.String()),
				slog.String("why", "Every upstream session of "+acct.Identity+" stayed in use. Have fewer clients send at once "+
					"for this identity, or spread them over more identities."),
			)})
		s.cc.hangUp("")
		return replyTooManySessions
	}
	connCtx, cancel := context.WithTimeout(s.cc.ctx, loginTimeout)
	up, err := s.srv.connect(connCtx, acct)
	cancel()
	if err != nil {
		release()
		return err
	}
	s.acct, s.release = acct, release
	s.setUpstream(up)
	s.cc.loggedIn()
	// The protocol trace ends here: messages are never traced.
	s.cc.stopTrace()
	proxy.AuditLogin(s.cc.ctx, s.log, proxy.LoginAudit{Result: proxy.LoginSuccess, Login: login, Identity: acct.Identity,
		Attrs: append(audit, slog.String("mailbox", acct.Mailbox), slog.String("upstream", up.addr))})
	s.log = s.log.With("login", login, "identity", acct.Identity)
	return nil
}

// loginRefused logs one audit line for a failed login and returns the
// client's reply. After maxAuthFailures the connection is closed. The audit
// line carries why: the cause and the fix, from package diagnose.
func (s *session) loginRefused(login, mech string, acct proxy.Account, err error) error {
	reply, result, reason := classifyLogin(err)
	s.authFailures++
	attrs := []slog.Attr{slog.String("mech", mech), slog.Any("err", err)}
	if text, ok := why(err, diagnoseAccount(acct, "")); ok {
		attrs = append(attrs, slog.String("why", text))
	}
	proxy.AuditLogin(s.cc.ctx, s.log, proxy.LoginAudit{Result: result, Login: login, Identity: acct.Identity,
		Reason: reason, Attrs: attrs})
	if s.authFailures >= maxAuthFailures {
		s.cc.hangUp(replyLine(replyAuthLimit))
	}
	return reply
}

// classifyLogin maps a login error to the client's reply, the audit result
// and a short reason. Wrong local credentials, a token that needs a new
// interactive login and an upstream that refused even a refreshed token are
// "535 5.7.8"; too many recent failures is a temporary refusal ("454
// 4.7.0", so a client retries later rather than dropping the message); any
// other failure (identity provider or upstream down, provider configuration,
// timeouts) is "454 4.7.0" too, so mail waits in the client's queue until
// the cause is fixed.
func classifyLogin(err error) (reply *smtp.SMTPError, result, reason string) {
	switch {
	case errors.Is(err, proxy.ErrBadCredentials):
		return replyAuthInvalid, proxy.LoginFailure, "bad local credentials"
	case errors.Is(err, proxy.ErrThrottled):
		return replyAuthTemporary, proxy.LoginFailure, "too many failed logins, throttled"
	case errors.Is(err, tokens.ErrNeedsLogin):
		return replyAuthInvalid, proxy.LoginFailure, "the identity needs a new interactive login"
	case errors.Is(err, proxy.ErrUpstreamRejected):
		return replyAuthInvalid, proxy.LoginFailure, "the upstream refused the token"
	case errors.Is(err, tokens.ErrConfiguration):
		return replyAuthTemporary, proxy.LoginError, "the identity provider refused the configuration"
	default:
		return replyAuthTemporary, proxy.LoginError, "identity provider or upstream unavailable"
	}
}
