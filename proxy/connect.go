package proxy

import (
	"context"
	"errors"
	"fmt"
)

// Connect gets a token for acct, dials its upstream and runs login. When the
// upstream rejects the token it refreshes the token once and retries on a new
// connection; a second rejection is returned as is.
func Connect[T any](ctx context.Context, g *Gateway, acct Account, login LoginFunc[T]) (T, error) {
	var zero T
	d, err := g.Upstream(acct)
	if err != nil {
		return zero, fmt.Errorf("choosing upstream for %s: %w", acct.Login, err)
	}
	tok, err := g.Tokens.Token(ctx, acct.Identity)
	if err != nil {
		return zero, err
	}
	for attempt := 0; ; attempt++ {
		conn, err := d.Dial(ctx)
		if err != nil {
			return zero, err
		}
		v, err := login(ctx, conn, d, acct, tok)
		if err == nil {
			return v, nil
		}
		if attempt > 0 || !errors.Is(err, ErrUpstreamRejected) {
			return zero, err
		}
		if tok, err = g.Tokens.Refresh(ctx, acct.Identity, tok); err != nil {
			return zero, err
		}
	}
}
