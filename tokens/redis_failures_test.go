package tokens

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/testredis"
	"github.com/xoauthd/xoauthd/proxy"
)

var _ proxy.FailureCounter = (*RedisFailures)(nil)

// TestRedisFailures: the counter keeps proxy.FailureCounter's contract
// across replicas: windows from the first failure, no lost increments from
// two replicas at once, Reset, and Redis down is an error (temporary), not
// a zero.
func TestRedisFailures(t *testing.T) {
	srv := testredis.Start(t)
	key := newKey(t)
	const window = 400 * time.Millisecond
	a := openRedisStore(t, srv, key).Failures("login", window)
	b := openRedisStore(t, srv, key).Failures("login", window)
	ctx := ctxT(t)
	if n, left, err := a.Count(ctx, "k"); n != 0 || left != 0 || err != nil {
		t.Fatalf("Count of a new key = %d, %v, %v", n, left, err)
	}
	var wg sync.WaitGroup
	for i := range 100 {
		f := a
		if i%2 == 1 {
			f = b
		}
		wg.Go(func() {
			if _, err := f.Add(ctx, "k"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	n, left, err := b.Count(ctx, "k")
	if n != 100 || left <= 0 || left > window || err != nil {
		t.Fatalf("after 100 Adds from two replicas: %d, %v, %v; want 100 within the window", n, left, err)
	}
	if n, _, _ := a.Count(ctx, "other"); n != 0 {
		t.Errorf("another key counts %d", n)
	}
	sources := openRedisStore(t, srv, key).Failures("source", window)
	if n, _, _ := sources.Count(ctx, "k"); n != 0 {
		t.Errorf("the source counter sees the login counter's key: %d", n)
	}
	waitFor(t, func() bool { n, _, _ := a.Count(ctx, "k"); return n == 0 })
	if n, err := a.Add(ctx, "k"); n != 1 || err != nil {
		t.Fatalf("first Add of a new window = %d, %v", n, err)
	}
	if err := b.Reset(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := a.Count(ctx, "k"); n != 0 {
		t.Fatalf("after Reset: %d", n)
	}
	srv.Stop()
	if _, _, err := a.Count(context.Background(), "k"); !IsTemporary(err) {
		t.Errorf("Count with Redis down: %v; want a temporary error", err)
	}
	if _, err := a.Add(context.Background(), "k"); !IsTemporary(err) {
		t.Errorf("Add with Redis down: %v; want a temporary error", err)
	}
}
