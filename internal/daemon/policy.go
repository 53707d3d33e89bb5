package daemon

import (
	"context"
	"errors"

	"github.com/xoauthd/xoauthd/internal/diagnose"
	"github.com/xoauthd/xoauthd/proxy"
	"github.com/xoauthd/xoauthd/tokens"
)

// classifiedTokens is the token source the fronts see: it wraps the token
// errors in the proxy's sentinels, so that the login failure policy
// (proxy.Classify) knows them without the fronts or the proxy depending on
// package tokens.
type classifiedTokens struct{ src proxy.TokenSource }

func (c classifiedTokens) Token(ctx context.Context, identity string) (string, error) {
	tok, err := c.src.Token(ctx, identity)
	return tok, classifyTokenError(err)
}

func (c classifiedTokens) Refresh(ctx context.Context, identity, stale string) (string, error) {
	tok, err := c.src.Refresh(ctx, identity, stale)
	return tok, classifyTokenError(err)
}

// classifyTokenError adds the proxy's sentinel for a classified token
// error; the error's text and chain stay as they were.
func classifyTokenError(err error) error {
	var kind error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, tokens.ErrNeedsLogin):
		kind = proxy.ErrSignInNeeded
	case errors.Is(err, tokens.ErrConfiguration):
		kind = proxy.ErrProviderConfig
	case errors.Is(err, tokens.ErrTemporary):
		kind = proxy.ErrProviderUnavailable
	default:
		return err
	}
	return &tokenError{err: err, kind: kind}
}

// tokenError is a token error with the proxy's sentinel for its class.
type tokenError struct{ err, kind error }

func (e *tokenError) Error() string   { return e.err.Error() }
func (e *tokenError) Unwrap() []error { return []error{e.err, e.kind} }

// explainLogin is the proxy.Explainer of every gateway: package diagnose's
// cause and fix of a failed login, or that it does not know the upstream's
// reply. It says nothing when diagnose knows neither the failure nor a
// reply in it (a wrong local password, throttling).
func explainLogin(err error, acct proxy.Account) (string, bool) {
	return diagnose.Why(err, diagnose.Account{Identity: acct.Identity, Mailbox: acct.Mailbox})
}
