package smtpfront

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/internal/diagnose"
	"github.com/xoauthd/xoauthd/proxy"
)

// SendRateFunc returns the sending limit of an account on this listener
// (its send_rate, the server's, or the provider's default). It reads the
// live configuration.
type SendRateFunc func(acct proxy.Account) Rate

// pace waits, at MAIL, until the session's identity may send its next
// message (Pacer): a burst is delayed rather than refused. A wait longer
// than the Pacer's bound is refused with "451 4.7.0" saying the limit and
// when to retry; the client keeps its message. The caller holds mu.
func (s *session) pace() error {
	var rate Rate
	if s.srv.opts.SendRate != nil {
		rate = s.srv.opts.SendRate(s.acct)
	}
	waited, err := s.srv.pacer.wait(s.cc.ctx, s.cc.pc.Drain, paceKey(s.acct), rate)
	var le *limitError
	switch {
	case errors.As(err, &le):
		s.log.Warn("message refused for now: sending limit reached", "limit", le.rate.String(),
			"retry_after", le.retryAfter.Round(time.Second).String(), "backing_off", le.backingOff,
			"max_wait", s.srv.pacer.opts.MaxWait.String())
		return replyLimitReached(le.rate, le.retryAfter, le.backingOff)
	case err != nil:
		s.cc.hangUp("")
		return replyShuttingDown
	case waited > 0:
		s.log.Info("message delayed by the sending limit", "limit", rate.String(), "waited", waited.String())
	}
	return nil
}

// upstreamLimited turns the upstream's rate-limit reply (Exchange's "554
// 5.2.0 ...SubmissionQuotaExceededException", a 4xx "message submission
// rate ... exceeded", an X.4.5 congestion reply: diagnose.IsSendingLimit)
// into "451 4.7.0": the message was not accepted, and a
// 5xx would have the client drop it, while waiting helps. The identity
// backs off. It returns nil for any other reply. The caller holds mu.
func (s *session) upstreamLimited(se *smtp.SMTPError) error {
	if !diagnose.IsSendingLimit(se) {
		return nil
	}
	d := s.srv.pacer.backOff(paceKey(s.acct))
	s.log.Warn("the upstream's sending limit was reached: backing off for this identity", "backoff", d.String(),
		"upstream_code", se.Code, "upstream_enhanced", enhancedString(se.EnhancedCode))
	return replyLimitReached(Rate{}, d, true)
}

// paceKey is the Pacer's key of an identity.
func paceKey(acct proxy.Account) string { return strings.ToLower(acct.Identity) }

// replyLimitReached is the 451 of a message refused for now by a sending
// limit: it names the limit and when to retry.
func replyLimitReached(rate Rate, retryAfter time.Duration, upstream bool) *smtp.SMTPError {
	secs := int(math.Ceil(retryAfter.Seconds()))
	what := "Sending limit of " + rate.String() + " for this account reached"
	if upstream {
		what = "Upstream sending limit for this account reached"
	}
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: fmt.Sprintf("%s, message not accepted; try again in %d seconds", what, secs)}
}
