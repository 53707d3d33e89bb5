package daemon

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/proxy"
)

// downCounter is a shared counter whose store cannot be reached.
type downCounter struct{}

var errDown = errors.New("redis down")

func (downCounter) Count(context.Context, string) (int, time.Duration, error) { return 0, 0, errDown }
func (downCounter) Add(context.Context, string) (int, error)                  { return 0, errDown }
func (downCounter) Reset(context.Context, string) error                       { return errDown }

// TestFailoverCounts: the shared counter's numbers while it answers; this
// process's own counts, never an error, while it does not.
func TestFailoverCounts(t *testing.T) {
	ctx := context.Background()
	shared := proxy.NewMemoryFailures(time.Minute, 10, nil)
	local := proxy.NewMemoryFailures(time.Minute, 10, nil)
	for range 5 { // other replicas' failures
		shared.Add(ctx, "k")
	}
	up := failover{shared: shared, local: local}
	if n, err := up.Add(ctx, "k"); n != 6 || err != nil {
		t.Fatalf("Add with the shared counter up = %d, %v; want 6", n, err)
	}
	if n, _, err := up.Count(ctx, "k"); n != 6 || err != nil {
		t.Fatalf("Count with the shared counter up = %d, %v; want 6", n, err)
	}
	down := failover{shared: downCounter{}, local: local}
	if n, err := down.Add(ctx, "k"); n != 2 || err != nil {
		t.Fatalf("Add with the shared counter down = %d, %v; want this process's 2", n, err)
	}
	if n, left, err := down.Count(ctx, "k"); n != 2 || left <= 0 || err != nil {
		t.Fatalf("Count with the shared counter down = %d, %v, %v; want 2", n, left, err)
	}
	if err := down.Reset(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := local.Count(ctx, "k"); n != 0 {
		t.Errorf("Reset left %d in the local counter", n)
	}
}
