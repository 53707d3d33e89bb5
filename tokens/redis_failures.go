package tokens

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// addFailureScript counts one failure: INCR, and on the first of a window
// PEXPIRE, in one step, so that no replica's failure is lost and no window
// is left without an end. KEYS: the counter. ARGV: the window in ms.
var addFailureScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n`)

// RedisFailures counts failed local logins in Redis, shared by every
// replica on it, so that a password guesser cannot multiply its budget by
// the number of replicas. It has the method set of proxy.FailureCounter
// (Count, Add, Reset; see that contract): fixed windows that start at a
// key's first failure. Keys are stored as {prefix}fail:{kind}:{key}; the
// proxy hands over source prefixes and hashed logins, never a login.
type RedisFailures struct {
	s      *RedisStore
	prefix string
	window time.Duration
}

// Failures returns the failure counter of kind ("source" or "login") with
// windows of length window, in this store's Redis.
func (s *RedisStore) Failures(kind string, window time.Duration) *RedisFailures {
	return &RedisFailures{s: s, prefix: s.prefix + "fail:" + kind + ":", window: window}
}

// Count returns key's failures in its window and how long until it ends.
func (f *RedisFailures) Count(ctx context.Context, key string) (int, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
	defer cancel()
	var get *redis.StringCmd
	var ttl *redis.DurationCmd
	_, err := f.s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.Get(ctx, f.prefix+key)
		ttl = p.PTTL(ctx, f.prefix+key)
		return nil
	})
	if errors.Is(err, redis.Nil) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, f.s.failed(err)
	}
	n, err := get.Int()
	if err != nil {
		return 0, 0, f.s.failed(err)
	}
	// PTTL: -2 gone, -1 no expiry, else whole milliseconds left.
	switch left := ttl.Val(); {
	case left == -2:
		return 0, 0, nil // expired between the two commands
	case left < 0:
		return n, f.window, nil // cannot happen with Add; at most a window
	case left == 0:
		return n, time.Millisecond, nil // under a millisecond left
	default:
		return n, left, nil
	}
}

// Add counts one failure of key and returns the count in its window.
func (f *RedisFailures) Add(ctx context.Context, key string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
	defer cancel()
	n, err := addFailureScript.Run(ctx, f.s.rdb, []string{f.prefix + key}, f.window.Milliseconds()).Int()
	if err != nil {
		return 0, f.s.failed(err)
	}
	return n, nil
}

// Reset forgets key's failures.
func (f *RedisFailures) Reset(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
	defer cancel()
	if err := f.s.rdb.Del(ctx, f.prefix+key).Err(); err != nil {
		return f.s.failed(err)
	}
	return nil
}
