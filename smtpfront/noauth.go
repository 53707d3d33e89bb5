package smtpfront

import (
	"log/slog"
	"net/netip"

	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/proxy"
)

// NoAuthFunc decides whether a client at remote may send without AUTH: ok
// with the account whose identity and mailbox its mail is sent with, and
// the network rule that admitted it (for the audit line). It reads the
// live configuration, so a reload applies to the next MAIL.
type NoAuthFunc func(remote netip.Addr) (acct proxy.Account, rule string, ok bool)

// The upstream session of an unauthenticated client could not be opened
// (token, identity provider or upstream): the message waits in the
// client's queue, since a 5xx would lose it; the log says why.
var replyNoAuthUnavailable = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
	Message: "Sending without authentication is unavailable now, try again later"}

// beginWithoutAuth starts the session of a client that sends MAIL without
// AUTH: when Options.NoAuth admits its address, the session logs in
// upstream as the configured account, as AUTH would have, and the audit
// line says that it was unauthenticated and which rule admitted it.
// Anyone else gets "530 5.7.0 Authentication required". The caller holds
// mu.
func (s *session) beginWithoutAuth() error {
	remote := s.cc.pc.Remote
	if s.srv.opts.NoAuth == nil {
		return replyAuthRequired
	}
	acct, rule, ok := s.srv.opts.NoAuth(remote)
	if !ok {
		s.log.Info("MAIL without AUTH refused: the client's address is not in no_auth.from of this listener",
			"remote_addr", remote.String())
		return replyAuthRequired
	}
	if s.cc.draining() {
		s.cc.hangUp("")
		return replyShuttingDown
	}
	audit := []slog.Attr{slog.String("mech", "none"), slog.Bool("unauthenticated", true), slog.String("no_auth_rule", rule)}
	err := s.begin(acct, acct.Login, audit)
	if err == nil {
		return nil
	}
	f := s.srv.opts.Gateway.LoginFailed(s.cc.ctx, s.log, acct.Login, acct, withConcurrencyCode(err), audit...)
	if f.Outcome == proxy.OutcomeIdentityLimit {
		return failureReply(f) // 421 4.3.2: the session ends, as after AUTH
	}
	return replyNoAuthUnavailable
}
