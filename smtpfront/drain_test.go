package smtpfront

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/testkit"
)

// TestDrainEndsIdleSessionsAtOnce: when the server begins a graceful
// shutdown, a session that waits for its next command ends at once with
// 421 4.3.2, whether it has logged in or not: nothing is under way there.
func TestDrainEndsIdleSessionsAtOnce(t *testing.T) {
	h := newHarness(t)
	preAuth := h.transcript()
	preAuth.cmd("EHLO client.test", "250 ")
	between := h.loggedInTranscript()
	between.cmd("MAIL FROM:<billing@example.com>", "250")
	between.cmd("RCPT TO:<a@example.net>", "250")
	between.cmd("RSET", "250") // the transaction is over
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- h.psrv.Shutdown(ctx) }()
	for name, tc := range map[string]*transcript{"before login": preAuth, "between transactions": between} {
		if rest := tc.expectClosed(); rest != "421 4.3.2 Service shutting down, try again later\r\n" {
			t.Errorf("%s: the session got %q, want 421 4.3.2 and the end", name, rest)
		}
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// TestDrainLetsTransactionFinish: a message under way when the shutdown
// begins is relayed and answered with the upstream's 250; a MAIL after it
// gets 421 4.3.2, and the session ends.
func TestDrainLetsTransactionFinish(t *testing.T) {
	h := newHarness(t)
	tc := h.loggedInTranscript()
	tc.data("billing@example.com", "a@example.net")
	tc.write("Subject: drained\r\n\r\nfirst half\r\n")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- h.psrv.Shutdown(ctx) }()
	testkit.Eventually(t, 10*time.Second, "the listener closes", func() bool { return h.psrv.ActiveConns() == 1 && !dialable(h.addr) })
	tc.write("second half\r\n.\r\nMAIL FROM:<next@example.com>\r\n")
	tc.expect("250")
	if rest := tc.expectClosed(); rest != "421 4.3.2 Service shutting down, try again later\r\n" {
		t.Errorf("MAIL after the drained message got %q, want 421 4.3.2 and the end", rest)
	}
	msgs := h.up.messages()
	if len(msgs) != 1 || !strings.Contains(string(msgs[0].data), "first half\r\nsecond half\r\n") {
		t.Fatalf("upstream got %d messages: %+v", len(msgs), msgs)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// dialable reports whether something accepts connections at addr.
func dialable(addr string) bool {
	c, err := dialTCP(addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
