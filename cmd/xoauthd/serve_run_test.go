package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/testkit"
)

// serving is an xoauthd command (serve and its flags) that a test runs in
// the background; out collects its standard output and error.
type serving struct {
	out    *testkit.SyncBuffer
	cancel context.CancelFunc
	done   chan int // its exit code
}

// startRun runs xoauthd with args until stop is called or the test ends.
func startRun(t *testing.T, args ...string) *serving {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s := &serving{out: &testkit.SyncBuffer{}, cancel: cancel, done: make(chan int, 1)}
	go func() { s.done <- run(ctx, args, strings.NewReader(""), s.out, s.out) }()
	return s
}

// stop cancels the run and fails t unless it exits with exitOK within 30s.
func (s *serving) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	select {
	case code := <-s.done:
		if code != exitOK {
			t.Fatalf("serve exited %d:\n%s", code, s.out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
}
