package smtpfront

import (
	"errors"

	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/internal/diagnose"
	"github.com/xoauthd/xoauthd/proxy"
)

// why returns the cause and the fix of a failure, in plain words for the
// log: what package diagnose knows of it (an upstream reply, a token
// error, a TLS or network failure), or that it does not know the upstream's
// reply. ok is false when there is nothing to explain beyond the reason
// (wrong local password, throttling). The client never sees it.
func why(err error, a diagnose.Account) (text string, ok bool) {
	return diagnose.Why(withConcurrencyCode(err), a)
}

// withConcurrencyCode gives Exchange's "432 Concurrent connections limit
// exceeded", which it also sends without an enhanced code, the code 4.3.2
// that the table knows it by. Other errors are returned unchanged.
func withConcurrencyCode(err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code == 432 && se.EnhancedCode == smtp.EnhancedCodeNotSet {
		return &smtp.SMTPError{Code: 432, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: se.Message}
	}
	return err
}

// diagnoseAccount names acct for diagnose; sender is the envelope sender of
// the transaction, if any, for the Send As fixes.
func diagnoseAccount(acct proxy.Account, sender string) diagnose.Account {
	return diagnose.Account{Identity: acct.Identity, Mailbox: acct.Mailbox, Sender: sender}
}

// account names the session's account for diagnose. The caller holds mu.
func (s *session) account() diagnose.Account { return diagnoseAccount(s.acct, s.from) }
