package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// Errors that the token source of a Gateway wraps around its own errors, so
// that the login failure policy can tell them apart without depending on the
// token package (the daemon's token adapter does the wrapping; the original
// error stays in the chain for the log and its explanation).
var (
	// ErrSignInNeeded means the identity's OAuth grant cannot be used any
	// more: someone must sign in again (xoauthd login IDENTITY).
	ErrSignInNeeded = errors.New("the identity needs a new sign-in")
	// ErrProviderConfig means the identity provider refused the app
	// registration, a provider setting or the account: the configuration
	// or the tenant must change.
	ErrProviderConfig = errors.New("the identity provider refused the configuration")
	// ErrProviderUnavailable means the identity provider could not be
	// reached or failed; it is temporary.
	ErrProviderUnavailable = errors.New("the identity provider is unavailable")
	// ErrUpstreamDenied means the upstream accepted the token but refuses
	// the session for a reason a new token does not fix (the mailbox
	// cannot be opened with it). Connect does not retry it.
	ErrUpstreamDenied = errors.New("the upstream denied the session")
)

// Outcome is what a failed login comes to.
type Outcome int

// The outcomes of a failed login, each with one class of reply on every
// protocol (see Class).
const (
	// OutcomeUnavailable: the identity provider or the upstream is down or
	// failed in a way that may pass; also any failure the policy does not
	// know.
	OutcomeUnavailable Outcome = iota
	// OutcomeBadCredentials: unknown login or wrong local password.
	OutcomeBadCredentials
	// OutcomeSignInNeeded: the identity's grant is gone (ErrSignInNeeded).
	OutcomeSignInNeeded
	// OutcomeConfiguration: the identity provider refused the
	// configuration (ErrProviderConfig).
	OutcomeConfiguration
	// OutcomeUpstreamRefused: the upstream refused even a fresh token
	// (ErrUpstreamRejected) or denied the session (ErrUpstreamDenied).
	OutcomeUpstreamRefused
	// OutcomeThrottled: too many recent failures (ErrThrottled).
	OutcomeThrottled
	// OutcomeIdentityLimit: the identity has as many upstream sessions as
	// max_upstream_per_identity allows (ErrIdentityLimit).
	OutcomeIdentityLimit
)

// Class is what a client should do about a failed login; a front answers
// each class with one kind of reply.
type Class int

// The classes of failed logins and the replies the fronts give them.
const (
	// ClassTemporary: try again later (IMAP NO [UNAVAILABLE], POP3
	// -ERR [SYS/TEMP], SMTP 454 4.7.0).
	ClassTemporary Class = iota
	// ClassCredentials: the local login or password is wrong; ask the user
	// (IMAP NO [AUTHENTICATIONFAILED], POP3 -ERR [AUTH], SMTP 535 5.7.8).
	ClassCredentials
	// ClassAdmin: the password was right but an administrator must act
	// before the login can work; asking the user for another password does
	// not help (IMAP NO [CONTACTADMIN], POP3 -ERR [SYS/PERM], SMTP 535 5.7.0).
	ClassAdmin
	// ClassLimit: the account has as many sessions as allowed; try again
	// when one ends (IMAP NO [LIMIT], POP3 -ERR [IN-USE], SMTP 421 4.3.2).
	ClassLimit
)

// ByClass returns the one of the four replies that answers class c; the
// fronts name their protocol's replies with it.
func ByClass[T any](c Class, temporary, credentials, admin, limit T) T {
	switch c {
	case ClassCredentials:
		return credentials
	case ClassAdmin:
		return admin
	case ClassLimit:
		return limit
	}
	return temporary
}

// Failure is how a failed login is answered and audited.
type Failure struct {
	Outcome Outcome
	Class   Class
	// Result is the audit result: LoginFailure (refused, and will be again
	// as it is) or LoginError (something is down; may succeed later).
	Result string
	// Reason is the short cause for the audit line.
	Reason string
	// Message is the text for the client, the same on every protocol: it
	// never says whether the login exists or what the upstream said.
	Message string
}

// Classify maps any login error to its Failure, with errors.Is/As only.
func Classify(err error) Failure {
	var te *ThrottledError
	switch {
	case errors.Is(err, ErrBadCredentials):
		return Failure{OutcomeBadCredentials, ClassCredentials, LoginFailure, "bad local credentials",
			"Authentication failed"}
	case errors.As(err, &te):
		return Failure{OutcomeThrottled, ClassTemporary, LoginFailure, "throttled after failed logins",
			fmt.Sprintf("Too many failed logins, try again in %d s", RetrySeconds(te.RetryAfter))}
	case errors.Is(err, ErrThrottled):
		return Failure{OutcomeThrottled, ClassTemporary, LoginFailure, "throttled after failed logins",
			"Too many failed logins, try again later"}
	case errors.Is(err, ErrIdentityLimit):
		return Failure{OutcomeIdentityLimit, ClassLimit, LoginError, "too many upstream sessions for this identity",
			"Too many sessions for this account, try again when one has ended"}
	case errors.Is(err, ErrSignInNeeded):
		return Failure{OutcomeSignInNeeded, ClassAdmin, LoginFailure, "the identity needs a new sign-in",
			"The mail provider sign-in for this account has ended; the administrator must sign in again"}
	case errors.Is(err, ErrProviderConfig):
		return Failure{OutcomeConfiguration, ClassAdmin, LoginFailure, "the identity provider refused the configuration",
			"The mail provider refused this account's configuration; contact the administrator"}
	case errors.Is(err, ErrUpstreamRejected), errors.Is(err, ErrUpstreamDenied):
		return Failure{OutcomeUpstreamRefused, ClassAdmin, LoginFailure, "the upstream refused the login",
			"The mail provider refused the login for this account; contact the administrator"}
	}
	return Failure{OutcomeUnavailable, ClassTemporary, LoginError, "identity provider or upstream unavailable",
		"Service temporarily unavailable, try again later"}
}

// Explainer returns the cause and the fix of a failed login in plain words
// for the log (the daemon injects package diagnose's); ok is false when
// there is nothing to say beyond the reason (wrong password, throttling).
type Explainer func(err error, acct Account) (text string, ok bool)

// LoginFailed classifies err, writes the audit line of the failed login
// (with the explanation from g.Explain when there is one, and attrs), counts
// a refusal at the identity limit in the metrics, and returns the Failure
// for the front's reply. login is what the client sent; acct is the account
// when the local check passed. g may be nil.
func (g *Gateway) LoginFailed(ctx context.Context, log *slog.Logger, login string, acct Account, err error, attrs ...slog.Attr) Failure {
	f := Classify(err)
	switch f.Outcome {
	case OutcomeThrottled:
		g.meter().throttled()
	case OutcomeIdentityLimit:
		g.meter().identityLimited()
	}
	all := make([]slog.Attr, 0, len(attrs)+2)
	all = append(all, attrs...)
	all = append(all, slog.Any("err", err))
	if g != nil && g.Explain != nil {
		if text, ok := g.Explain(err, acct); ok {
			all = append(all, slog.String("why", text))
		}
	}
	g.AuditLogin(ctx, log, LoginAudit{Result: f.Result, Login: login, Identity: acct.Identity, Reason: f.Reason, Attrs: all})
	return f
}
