package smtpfront

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/proxy"
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
		return s.loginRefused(login, mech, acct, err)
	}
	return nil
}

// begin takes a slot of acct's identity (waiting up to
// Options.UpstreamWait), opens the upstream session and makes acct the
// session's account, with one audit line for a success (audit adds to it).
// When every slot stayed busy it returns the *proxy.IdentityLimitError and
// the session ends after the reply; when the upstream session could not be
// opened it returns that error. Failures are not logged yet: the caller
// writes their audit line. The caller holds mu.
func (s *session) begin(acct proxy.Account, login string, audit []slog.Attr) error {
	release, err := s.srv.slots.Acquire(s.cc.ctx, "smtp", acct.Identity, s.srv.opts.MaxUpstreamPerIdentity, s.srv.opts.UpstreamWait)
	if err != nil {
		s.cc.hangUp("")
		return err
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
	s.srv.opts.Gateway.AuditLogin(s.cc.ctx, s.log, proxy.LoginAudit{Result: proxy.LoginSuccess, Login: login, Identity: acct.Identity,
		Attrs: append(audit, slog.String("mailbox", acct.Mailbox), slog.String("upstream", up.addr))})
	s.log = s.log.With("login", login, "identity", acct.Identity)
	return nil
}

// loginRefused logs one audit line for a failed login and returns the
// client's reply. After maxAuthFailures the connection is closed. The
// policy (proxy.Classify) decides the class of reply and the audit line.
func (s *session) loginRefused(login, mech string, acct proxy.Account, err error, attrs ...slog.Attr) error {
	f := s.srv.opts.Gateway.LoginFailed(s.cc.ctx, s.log, login, acct, withConcurrencyCode(err), append(attrs, slog.String("mech", mech))...)
	s.authFailures++
	if s.authFailures >= maxAuthFailures {
		s.cc.hangUp(replyLine(replyAuthLimit))
	}
	return failureReply(f)
}

// failureReply is the reply to AUTH for a failed login (RFC 4954 §6 codes,
// RFC 3463 enhanced codes): 535 5.7.8 for the credentials, 535 5.7.0 when
// an administrator must act, 454 4.7.0 when it may pass, 421 4.3.2 when
// the account has as many sessions as allowed.
func failureReply(f proxy.Failure) *smtp.SMTPError {
	code, enhanced := proxy.ByClass(f.Class, 454, 535, 535, 421),
		proxy.ByClass(f.Class, smtp.EnhancedCode{4, 7, 0}, smtp.EnhancedCode{5, 7, 8}, smtp.EnhancedCode{5, 7, 0}, smtp.EnhancedCode{4, 3, 2})
	return &smtp.SMTPError{Code: code, EnhancedCode: enhanced, Message: f.Message}
}
