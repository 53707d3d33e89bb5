package main

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/testkit"
)

// TestStopOnSignals: the first signal cancels the context, the second
// exits at once with status 1 and says why; after release nothing exits.
func TestStopOnSignals(t *testing.T) {
	sigs := make(chan os.Signal, 2)
	out := &testkit.SyncBuffer{}
	exited := make(chan int, 1)
	ctx, release := stopOnSignals(sigs, out, func(code int) { exited <- code })
	defer release()
	if ctx.Err() != nil {
		t.Fatal("cancelled before any signal")
	}
	sigs <- syscall.SIGTERM
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the first signal did not cancel the context")
	}
	select {
	case code := <-exited:
		t.Fatalf("exited with %d after one signal", code)
	default:
	}
	sigs <- os.Interrupt
	select {
	case code := <-exited:
		if code != exitFailure {
			t.Errorf("second signal exited with %d, want %d", code, exitFailure)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second signal did not exit")
	}
	if !strings.Contains(out.String(), "second signal") {
		t.Errorf("stderr %q does not say why it exits", out.String())
	}

	// After release, signals are no business of stopOnSignals.
	sigs2 := make(chan os.Signal, 2)
	_, release2 := stopOnSignals(sigs2, out, func(code int) { t.Errorf("exit(%d) after release", code) })
	release2()
	sigs2 <- syscall.SIGTERM
	sigs2 <- syscall.SIGTERM
}
