package testkit

import (
	"testing"
	"time"
)

// Eventually polls cond until it holds and fails t, naming what it waited
// for, when timeout passes first. It is for state that changes shortly
// after the event a test caused (a log line written as a session ends, a
// counter bumped after a reply), never a stand-in for a sleep.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	pause := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(pause)
		pause = min(2*pause, 50*time.Millisecond)
	}
}
