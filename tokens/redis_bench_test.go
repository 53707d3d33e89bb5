package tokens

import (
	"context"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/testidp"
	"github.com/xoauthd/xoauthd/internal/testredis"
)

// BenchmarkBackends compares the file and the Redis backend in one run:
// cached is the token lookup of every upstream login while the access
// token is valid (the Redis backend answers from memory while its
// subscription is up); refresh is one forced refresh against the test
// identity provider, which with Redis adds the cluster lock and the
// compare-and-set write, and with the file the lock file and the fsynced
// rewrite; lock is what the cluster lock adds to a refresh with Redis.
func BenchmarkBackends(b *testing.B) {
	srv := testredis.Start(b)
	idp := newIdP(b, testidp.Options{})
	prov := msProvider(idp, publicClient, "", config.FlowAuthCode)
	redisKey := newKey(b)
	open := map[string]func(b *testing.B) Backend{
		"file": func(b *testing.B) Backend { s, _ := newStore(b); return s },
		"redis": func(b *testing.B) Backend {
			s := openRedisStore(b, srv, redisKey)
			waitSubscribed(b, s)
			return s
		},
	}
	ctx := context.Background()
	for _, name := range []string{"file", "redis"} {
		b.Run("cached/"+name, func(b *testing.B) {
			s := open[name](b)
			seed(b, s, idp, alice, publicClient, "cached", time.Now().Add(time.Hour))
			m := NewManager(s, providersFor(prov), Options{})
			for b.Loop() {
				if _, err := m.Token(ctx, alice); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	for _, name := range []string{"file", "redis"} {
		b.Run("refresh/"+name, func(b *testing.B) {
			s := open[name](b)
			seed(b, s, idp, alice, publicClient, "first", time.Now().Add(time.Hour))
			m := NewManager(s, providersFor(prov), Options{})
			stale := "first"
			for b.Loop() {
				tok, err := m.Refresh(ctx, alice, stale)
				if err != nil {
					b.Fatal(err)
				}
				stale = tok
			}
		})
	}
	// What the cluster lock adds to each refresh with Redis: take it, read
	// the token set under it, release it.
	b.Run("lock/redis", func(b *testing.B) {
		s := open["redis"](b).(*RedisStore)
		seed(b, s, idp, alice, publicClient, "first", time.Now().Add(time.Hour))
		for b.Loop() {
			release, err := s.lockRefresh(ctx, alice, time.Minute)
			if err != nil || release == nil {
				b.Fatal("lock not taken", err)
			}
			if _, _, err := s.getFresh(alice); err != nil {
				b.Fatal(err)
			}
			release()
		}
	})
}
