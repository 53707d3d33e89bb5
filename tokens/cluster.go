package tokens

import (
	"context"
	"time"
)

const (
	// lockSlack is how much longer a refresh lock lives than the request
	// it covers, for writing the result.
	lockSlack = 5 * time.Second
	// lockPollMin and lockPollMax bound the pause between two looks at a
	// refresh that another replica holds the lock for.
	lockPollMin = 5 * time.Millisecond
	lockPollMax = 100 * time.Millisecond
)

// lockTTL is how long a replica holds an identity's refresh lock: the
// request to the provider plus the write. A replica that stalls longer
// loses the lock; the version check of every write keeps it from replacing
// what another replica stored meanwhile.
func (m *Manager) lockTTL() time.Duration {
	if m.opts.RefreshLockTTL > 0 {
		return m.opts.RefreshLockTTL
	}
	return m.opts.RequestTimeout + lockSlack
}

// flightTimeout bounds one coalesced refresh: the request, and with a
// shared store also the wait for a lock that a dead replica left behind.
func (m *Manager) flightTimeout() time.Duration {
	if _, ok := m.store.(refreshLocker); ok {
		return m.lockTTL() + m.opts.RequestTimeout + lockSlack
	}
	return m.opts.RequestTimeout
}

// clusterTurn waits for this process's turn to refresh rec's identity in a
// store shared by several replicas. It returns with the lock (release not
// nil) and the record read under it, or, when another replica stored a
// usable token meanwhile, with that token and no lock. Waiting is bounded
// by ctx; a store that cannot be reached ends it with a temporary error (or
// the cached token while it is valid).
func (m *Manager) clusterTurn(ctx context.Context, l refreshLocker, rec record, stale string) (cur record, release func(), tok string, err error) {
	identity := rec.Identity
	pause := lockPollMin
	for {
		release, err := l.lockRefresh(ctx, identity, m.lockTTL())
		if err != nil {
			tok, err := m.cachedOr(rec.AccessToken, rec.Expiry, stale, err)
			return record{}, nil, tok, err
		}
		cur, ok, err := l.getFresh(identity)
		switch {
		case err != nil:
			tok, err = m.cachedOr(rec.AccessToken, rec.Expiry, stale, err)
		case !ok:
			err = notLoggedIn(identity)
		case m.usable(cur) && cur.AccessToken != stale:
			tok = cur.AccessToken
		default:
			err = storedFailure(cur)
			if err == nil && release != nil {
				return cur, release, "", nil
			}
		}
		if err != nil || tok != "" {
			if release != nil {
				release()
			}
			return record{}, nil, tok, err
		}
		select {
		case <-ctx.Done():
			tok, err := m.cachedOr(rec.AccessToken, rec.Expiry, stale, &TemporaryError{Identity: identity, Err: ctx.Err(),
				Meaning: "another replica holds the refresh lock of " + identity + " and stored no new token in time"})
			return record{}, nil, tok, err
		case <-time.After(pause):
		}
		pause = min(2*pause, lockPollMax)
	}
}
