package daemon

import (
	"context"
	"time"

	"github.com/xoauthd/xoauthd/proxy"
	"github.com/xoauthd/xoauthd/tokens"
)

// sharedFailures makes the local-login failure counters of o live in the
// token store's Redis when there is one, so that the replicas sharing it
// share one throttle: a password guesser spreading over n replicas gets
// the limit, not n times it. While Redis cannot be reached, each replica
// throttles with its own counts (failover). Counters the caller set are
// kept; with the file store the counters stay in this process.
func (d *Daemon) sharedFailures(o proxy.CredentialOptions) proxy.CredentialOptions {
	rs, ok := d.ops.store.(*tokens.RedisStore)
	if !ok {
		return o
	}
	window, tracked := o.Window, o.MaxTracked
	if window <= 0 {
		window = proxy.DefaultWindow
	}
	if tracked <= 0 {
		tracked = proxy.DefaultMaxTracked
	}
	if o.SourceFailures == nil {
		o.SourceFailures = failover{rs.Failures("source", window), proxy.NewMemoryFailures(window, tracked, o.Now)}
	}
	if o.LoginFailures == nil {
		o.LoginFailures = failover{rs.Failures("login", window), proxy.NewMemoryFailures(window, tracked, o.Now)}
	}
	return o
}

// failover counts in shared (Redis) while it answers, and in local (this
// process) always, so that when Redis cannot be reached local logins go
// on, throttled by this replica's own counts instead of failing: an
// unreachable Redis must not stop the sessions that have a cached token,
// nor let guesses through unthrottled.
type failover struct {
	shared, local proxy.FailureCounter
}

// Count implements proxy.FailureCounter.
func (f failover) Count(ctx context.Context, key string) (int, time.Duration, error) {
	n, left, err := f.shared.Count(ctx, key)
	if err != nil {
		return f.local.Count(ctx, key)
	}
	return n, left, nil
}

// Add implements proxy.FailureCounter.
func (f failover) Add(ctx context.Context, key string) (int, error) {
	local, err := f.local.Add(ctx, key)
	if err != nil {
		return 0, err
	}
	if n, err := f.shared.Add(ctx, key); err == nil {
		return n, nil
	}
	return local, nil
}

// Reset implements proxy.FailureCounter.
func (f failover) Reset(ctx context.Context, key string) error {
	_ = f.shared.Reset(ctx, key) // a window left in Redis ends by itself
	return f.local.Reset(ctx, key)
}
