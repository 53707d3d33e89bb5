package proxy

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Connect gets a token for acct, dials its upstream and runs login. When the
// upstream rejects the token it refreshes the token once and retries on a new
// connection; a second rejection is returned as is. With g.Sessions, the
// session is registered under acct.Login until its connection ends (see
// Sessions); with g.Limits, it holds one of its identity's upstream places
// until then, and a login over the limit is refused before anything else.
func Connect[T any](ctx context.Context, g *Gateway, acct Account, login LoginFunc[T]) (T, error) {
	var zero T
	free, err := g.holdPlace(ctx, acct)
	if err != nil {
		return zero, err
	}
	d, err := g.Upstream(acct)
	if err != nil {
		free()
		return zero, fmt.Errorf("choosing upstream for %s: %w", acct.Login, err)
	}
	leave, err := g.Sessions.enter(ctx, acct.Login)
	if err != nil {
		free()
		return zero, err
	}
	v, err := connect(ctx, g, d, acct, login)
	if err != nil {
		leave()
		free()
	}
	return v, err
}

// holdPlace takes one of acct's identity's upstream places (Gateway.Limits)
// for ctx's connection until the connection ends. free gives it back at
// once, for a login that failed. Without Limits, a limit or a connection
// scope in ctx, it holds nothing.
func (g *Gateway) holdPlace(ctx context.Context, acct Account) (free func(), err error) {
	sc := scopeOf(ctx)
	if g.Limits == nil || g.MaxPerIdentity <= 0 || sc == nil {
		return func() {}, nil
	}
	release, err := g.Limits.Acquire(ctx, g.LimitKey, acct.Identity, g.MaxPerIdentity, 0)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(sc.ctx, release)
	return func() {
		stop()
		release()
	}, nil
}

// connect is Connect after the upstream was chosen.
func connect[T any](ctx context.Context, g *Gateway, d *Dialer, acct Account, login LoginFunc[T]) (T, error) {
	var zero T
	tok, err := g.Tokens.Token(ctx, acct.Identity)
	if err != nil {
		return zero, err
	}
	m := g.Meter
	for attempt := 0; ; attempt++ {
		start := time.Now()
		conn, err := d.Dial(ctx)
		if err != nil {
			return zero, err
		}
		m.dialed(time.Since(start))
		start = time.Now()
		v, err := login(ctx, conn, d, acct, tok)
		if err == nil {
			m.authenticated(time.Since(start))
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
