package testkit

import (
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
)

// ExistsWatcher returns a handler for imapclient.Options that sends the
// message count of each untagged EXISTS to the returned channel (which
// holds a few; a test reads them as they come).
func ExistsWatcher() (*imapclient.UnilateralDataHandler, <-chan uint32) {
	exists := make(chan uint32, 4)
	return &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
	}, exists
}

// IdleSeesExists starts IDLE on c (a mailbox selected), runs deliver and
// fails t unless an EXISTS of want arrives on exists (from ExistsWatcher)
// within timeout; then it ends IDLE.
func IdleSeesExists(t testing.TB, c *imapclient.Client, exists <-chan uint32, want uint32, timeout time.Duration, deliver func() error) {
	t.Helper()
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	if err := deliver(); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-exists:
		if n != want {
			t.Errorf("EXISTS %d during IDLE, want %d", n, want)
		}
	case <-time.After(timeout):
		t.Fatalf("no EXISTS during IDLE within %v", timeout)
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
}
