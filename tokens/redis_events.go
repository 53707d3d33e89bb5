package tokens

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// subscribe follows the events channel until ctx ends: another replica's
// write or delete drops the cached copy. While the subscription is down,
// every read goes to Redis (and falls back on the cache when Redis is
// unreachable); when it is back, the cache is re-checked and identities
// whose token sets disappeared (a Redis restarted without persistence) are
// named in the log.
func (s *RedisStore) subscribe(ctx context.Context) {
	defer close(s.done)
	ps := s.ps
	pause := 50 * time.Millisecond
	subscribed := false
	for ctx.Err() == nil {
		if !subscribed {
			// Once subscribed, the client subscribes again by itself
			// after a reconnect.
			subscribed = ps.Subscribe(ctx, s.events()) == nil
		}
		msg, err := ps.ReceiveTimeout(ctx, redisPingEvery)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if isTimeout(err) {
				if perr := ps.Ping(ctx); perr == nil {
					continue
				}
			}
			if s.setSubscribed(false) {
				s.log.Warn("lost the token store's event subscription; reading every token from the store until it is back",
					"store", s.desc, "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(pause):
			}
			pause = min(2*pause, redisResubscribeMax)
			continue
		}
		pause = 50 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				s.setSubscribed(true)
				s.checkLost()
			}
		case *redis.Message:
			s.event(m.Payload)
		}
	}
}

// isTimeout reports a receive that found no message in time.
func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// setSubscribed records the subscription state and reports a change.
// Losing the subscription marks every cached entry stale (it stays for
// when Redis cannot be reached); a new subscription empties the cache:
// events may have been missed, and a Redis that restarted empty counts
// versions from 1 again.
func (s *RedisStore) setSubscribed(on bool) (changed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed = s.subscribed != on
	s.subscribed = on
	s.gen++
	if on {
		clear(s.cache)
		return changed
	}
	for k, c := range s.cache {
		c.fresh = false
		s.cache[k] = c
	}
	return changed
}

// event handles "VERSION IDENTITY" from the events channel.
func (s *RedisStore) event(payload string) {
	v, k, ok := strings.Cut(payload, " ")
	version, err := strconv.ParseInt(v, 10, 64)
	if !ok || err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	if version == 0 {
		delete(s.known, k)
	}
	if c, ok := s.cache[k]; ok && (version == 0 || c.version < version) {
		c.fresh = false
		s.cache[k] = c
	}
}

// checkLost looks up every identity seen before and logs those that have
// no token set any more, then learns the identities stored now.
func (s *RedisStore) checkLost() {
	s.mu.Lock()
	known := slices.Sorted(maps.Keys(s.known))
	s.mu.Unlock()
	stored, err := s.scanIdentities()
	if err != nil {
		return
	}
	for _, k := range known {
		if slices.Contains(stored, k) {
			continue
		}
		s.log.Error("the token store has no tokens for an identity any more (was Redis restarted without persistence, or the keys deleted?); "+
			"its logins fail until it is logged in again", "store", s.desc, "identity", k, "fix", "xoauthd login "+k)
		s.mu.Lock()
		delete(s.known, k)
		delete(s.cache, k)
		s.mu.Unlock()
	}
	s.mu.Lock()
	for _, k := range stored {
		s.known[k] = true
	}
	s.mu.Unlock()
}
