package tokens

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/xoauthd/xoauthd/config"
)

// Results of KeepAlive, passed to KeeperOptions.OnResult.
const (
	KeepaliveRefreshed  = "refreshed"   // the refresh token was used: the provider issued new tokens
	KeepaliveNotDue     = "not_due"     // the refresh token was used recently; nothing was sent
	KeepaliveSkipped    = "skipped"     // nothing to keep alive: not logged in, client credentials, or already needing a login
	KeepaliveNeedsLogin = "needs_login" // the provider refused the refresh token: a person must log in
	KeepaliveTemporary  = "temporary"   // the provider could not be reached; everything is kept and tried again
	KeepaliveError      = "error"       // the provider refused the configuration, or a local failure
)

// Defaults of KeeperOptions.
const (
	// DefaultKeepaliveTimeout bounds the wait for one identity's refresh.
	DefaultKeepaliveTimeout = time.Minute
	// DefaultKeepaliveSpacing is the mean pause between two refreshes of a
	// round, so that many idle identities do not reach the provider at once.
	DefaultKeepaliveSpacing = 2 * time.Second
	// maxRoundPeriod bounds the time between two rounds: an identity is
	// refreshed at most this much later than its interval says.
	maxRoundPeriod = 6 * time.Hour
	// maxFirstRoundDelay bounds the wait before the first round, so that
	// identities that went idle while xoauthd was stopped are seen soon.
	maxFirstRoundDelay = 5 * time.Minute
	// offRecheck is how often a Keeper that is switched off (interval 0)
	// looks whether a reload switched it on.
	offRecheck = time.Hour
)

// Status returns identity's stored state on the Manager's clock; ok is
// false when nothing is stored for it.
func (m *Manager) Status(identity string) (st Status, ok bool, err error) {
	return m.store.Status(identity, m.opts.Now())
}

// KeepAlive refreshes identity's tokens when its refresh token has not been
// used (by a login or a refresh) for idle or longer, so that the provider
// does not expire it for inactivity (Microsoft: 90 days, AADSTS700082). It
// uses the same single-flight refresh as Token: one request per identity at
// a time, and the rotated refresh token is saved before KeepAlive returns.
// A failure changes no token: a needs-login result is recorded in the store
// by the refresh itself, a temporary one keeps everything as it was.
//
// It returns one of the Keepalive* results, and the error when there was
// one. A skipped identity whose stored refresh token was already refused
// comes with that NeedsLoginError, so that a caller can report it.
func (m *Manager) KeepAlive(ctx context.Context, identity string, idle time.Duration) (string, error) {
	p, err := m.provider(identity)
	if err != nil {
		return KeepaliveError, err
	}
	if p.flow == config.FlowClientCredentials {
		return KeepaliveSkipped, nil
	}
	rec, ok, err := m.store.get(identity)
	if err != nil {
		return KeepaliveError, err
	}
	if !ok || rec.RefreshToken == "" || (rec.Provider != "" && p.name != "" && rec.Provider != p.name) {
		return KeepaliveSkipped, nil // a login with the account's provider is needed; Token says so
	}
	if err := storedFailure(rec); err != nil {
		return KeepaliveSkipped, err
	}
	if m.opts.Now().Sub(lastUse(rec)) < idle {
		return KeepaliveNotDue, nil
	}
	// Passing the cached access token as the stale one makes the refresh
	// go to the provider even when that token is still valid.
	stale := rec.AccessToken
	_, err = m.coalesceRetry(ctx, "id\x00"+storeKey(identity), stale, m.refreshFetch(identity, p, stale))
	switch {
	case err == nil:
		return KeepaliveRefreshed, nil
	case errors.Is(err, ErrNeedsLogin):
		return KeepaliveNeedsLogin, err
	case IsTemporary(err), errors.Is(err, context.DeadlineExceeded):
		return KeepaliveTemporary, err
	}
	return KeepaliveError, err
}

// lastUse is when rec's refresh token was last obtained or used.
func lastUse(rec record) time.Time {
	if rec.LastRefresh.After(rec.LoggedIn) {
		return rec.LastRefresh
	}
	return rec.LoggedIn
}

// KeeperOptions configure a Keeper.
type KeeperOptions struct {
	// Interval returns the keep-alive interval in force (tokens.keepalive;
	// read before every round, so a reload changes it): an identity whose
	// refresh token was not used for this long is refreshed. Zero or less
	// (or a nil Interval): off.
	Interval func() time.Duration
	// Identities returns the identities to look after, read before every
	// round (those of the configuration in force).
	Identities func() []string
	// Timeout bounds the wait for one identity (default
	// DefaultKeepaliveTimeout). The refresh itself is bounded by the
	// Manager's RequestTimeout and finishes even when the wait ends.
	Timeout time.Duration
	// Spacing is the mean pause after each refresh of a round before the
	// next identity (default DefaultKeepaliveSpacing; negative: none).
	Spacing time.Duration
	// OnResult, when set, is called after every identity of every round
	// with the result of KeepAlive and its error (the metrics and alerts).
	OnResult func(identity, result string, err error)
	// Logger receives the results (nil: discard). Failures are logged at
	// WARN with their cause and fix.
	Logger *slog.Logger
	// After waits like time.After (nil: time.After); tests drive it.
	After func(d time.Duration) <-chan time.Time
	// Jitter returns a random duration in [0, n) (nil: math/rand/v2);
	// tests make it predictable.
	Jitter func(n time.Duration) time.Duration
}

// Keeper refreshes idle identities in rounds so that their refresh tokens
// stay alive. Rounds come every quarter interval (at most every 6 hours),
// jittered by ±10%, the first one within 5 minutes of Run; in a round the
// identities are refreshed one at a time.
type Keeper struct {
	m    *Manager
	opts KeeperOptions
	log  *slog.Logger
}

// NewKeeper returns a Keeper over m.
func NewKeeper(m *Manager, opts KeeperOptions) *Keeper {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultKeepaliveTimeout
	}
	if opts.Spacing == 0 {
		opts.Spacing = DefaultKeepaliveSpacing
	}
	if opts.After == nil {
		opts.After = time.After
	}
	if opts.Jitter == nil {
		opts.Jitter = func(n time.Duration) time.Duration {
			if n <= 0 {
				return 0
			}
			return rand.N(n)
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Keeper{m: m, opts: opts, log: log}
}

// interval is the keep-alive interval in force; 0 when off.
func (k *Keeper) interval() time.Duration {
	if k.opts.Interval == nil {
		return 0
	}
	return max(k.opts.Interval(), 0)
}

// period is the time between two rounds for interval.
func period(interval time.Duration) time.Duration {
	return min(interval/4, maxRoundPeriod)
}

// Run runs rounds until ctx is done.
func (k *Keeper) Run(ctx context.Context) {
	wait := offRecheck
	if p := period(k.interval()); p > 0 {
		wait = k.opts.Jitter(min(p, maxFirstRoundDelay))
	}
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			return
		case <-k.opts.After(wait):
		}
		interval := k.interval()
		p := period(interval)
		if p <= 0 {
			wait = offRecheck
			continue
		}
		k.Round(ctx, interval)
		wait = p - p/10 + k.opts.Jitter(p/5)
	}
}

// Round looks at every identity once and refreshes those whose refresh
// token was not used for interval, one at a time. It stops early when ctx
// is done.
func (k *Keeper) Round(ctx context.Context, interval time.Duration) {
	var refreshed, failed int
	ids := k.identities()
	for i, id := range ids {
		if ctx.Err() != nil {
			return
		}
		rctx, cancel := context.WithTimeout(ctx, k.opts.Timeout)
		result, err := k.m.KeepAlive(rctx, id, interval)
		cancel()
		if ctx.Err() != nil {
			return // stopping: an unfinished wait is no failure
		}
		k.report(id, result, err)
		switch result {
		case KeepaliveNotDue, KeepaliveSkipped:
			continue
		case KeepaliveRefreshed:
			refreshed++
		default:
			failed++
		}
		if i < len(ids)-1 && k.opts.Spacing > 0 {
			select {
			case <-ctx.Done():
				return
			case <-k.opts.After(k.opts.Spacing/2 + k.opts.Jitter(k.opts.Spacing)):
			}
		}
	}
	k.log.Debug("keep-alive round done", "identities", len(ids), "refreshed", refreshed, "failed", failed)
}

// identities returns the identities to look after, or none.
func (k *Keeper) identities() []string {
	if k.opts.Identities == nil {
		return nil
	}
	return k.opts.Identities()
}

// report logs one identity's result and passes it on.
func (k *Keeper) report(identity, result string, err error) {
	switch result {
	case KeepaliveRefreshed:
		k.log.Info("keep-alive: refreshed the tokens of an idle identity", "identity", identity)
	case KeepaliveNotDue:
	case KeepaliveSkipped:
		if err != nil {
			k.log.Debug("keep-alive: skipped an identity that needs a new login", "identity", identity, "err", err.Error())
		}
	case KeepaliveTemporary:
		k.log.Warn("keep-alive refresh failed; the stored tokens are kept and the next round tries again",
			"identity", identity, "result", result, "err", err)
	default:
		k.log.Warn("keep-alive refresh failed", "identity", identity, "result", result, "err", err)
	}
	if k.opts.OnResult != nil {
		k.opts.OnResult(identity, result, err)
	}
}
