package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/testkit"
)

func TestIdentityLimits(t *testing.T) {
	var l IdentityLimits
	ctx := t.Context()
	r1, err := l.Acquire(ctx, "imap", "a@contoso.test", 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := l.Acquire(ctx, "imap", "A@Contoso.test", 2, 0) // identities compare case-insensitively
	if err != nil {
		t.Fatal(err)
	}
	// Another identity and another key are not affected.
	rb, err := l.Acquire(ctx, "imap", "b@contoso.test", 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	rp, err := l.Acquire(ctx, "pop3", "a@contoso.test", 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Refused at once, with the limit and how to raise it.
	var le *IdentityLimitError
	if _, err := l.Acquire(ctx, "imap", "a@contoso.test", 2, 0); !errors.As(err, &le) || !errors.Is(err, ErrIdentityLimit) ||
		le.Limit != 2 || le.Waited != 0 || !strings.Contains(err.Error(), "raise max_upstream_per_identity") {
		t.Fatalf("third place: %v", err)
	}
	if n := l.InUse("imap", "a@contoso.test"); n != 2 {
		t.Errorf("in use = %d, want 2", n)
	}
	// A larger limit on another listener of the same key has room.
	r3, err := l.Acquire(ctx, "imap", "a@contoso.test", 3, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Waiting: a timeout, a cancelled context, a place given back.
	if _, err := l.Acquire(ctx, "imap", "a@contoso.test", 3, 10*time.Millisecond); !errors.As(err, &le) || le.Waited != 10*time.Millisecond {
		t.Fatalf("wait timed out: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.Acquire(cctx, "imap", "a@contoso.test", 3, time.Hour); !errors.Is(err, context.Canceled) || errors.Is(err, ErrIdentityLimit) {
		t.Fatalf("cancelled wait: %v", err)
	}
	got := make(chan error)
	go func() {
		r, err := l.Acquire(ctx, "imap", "a@contoso.test", 3, time.Minute)
		if err == nil {
			r()
		}
		got <- err
	}()
	r1()
	r1() // a second call does nothing
	if err := <-got; err != nil {
		t.Fatalf("waiter: %v", err)
	}
	if n := l.InUse("imap", "a@contoso.test"); n != 2 {
		t.Errorf("in use after a release and a waiter's round = %d, want 2", n)
	}
	for _, r := range []func(){r2, r3, rb, rp} {
		r()
	}
	if n := l.entries(); n != 0 {
		t.Errorf("%d entries left after every release", n)
	}
	// No limit.
	if _, err := l.Acquire(ctx, "imap", "a@contoso.test", 0, 0); err != nil {
		t.Errorf("max 0: %v", err)
	}
}

// TestConnectHoldsIdentityPlace checks Connect with Gateway.Limits: a
// session holds its place while its connection lives, a login over the
// limit is refused before anything is dialled, a failed login gives its
// place back at once, and an ended connection frees its place.
func TestConnectHoldsIdentityPlace(t *testing.T) {
	d := plainUpstream(t)
	var dials int
	g := &Gateway{Tokens: &fakeTokens{current: "tok1"}, Upstream: func(Account) (*Dialer, error) { dials++; return d, nil },
		Limits: &IdentityLimits{}, LimitKey: "imap", MaxPerIdentity: 1}
	acct := Account{Login: "erp", Identity: "billing@contoso.com"}
	ok := func(_ context.Context, conn net.Conn, _ *Dialer, _ Account, _ string) (net.Conn, error) {
		return conn, nil
	}
	conn := func() (context.Context, context.CancelFunc) {
		ctx, cancel := context.WithCancelCause(t.Context())
		return withConnScope(ctx, cancel, nil), func() { cancel(nil) }
	}
	ctx1, end1 := conn()
	up, err := Connect(ctx1, g, acct, ok)
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	ctx2, end2 := conn()
	defer end2()
	dialsBefore := dials
	if _, err := Connect(ctx2, g, acct, ok); !errors.Is(err, ErrIdentityLimit) {
		t.Fatalf("second session: %v", err)
	}
	if dials != dialsBefore {
		t.Error("the refused login chose an upstream")
	}
	end1()
	testkit.Eventually(t, 5*time.Second, "the ended connection's place to be free", func() bool { return g.Limits.InUse("imap", acct.Identity) == 0 })
	failing := func(_ context.Context, conn net.Conn, _ *Dialer, _ Account, _ string) (net.Conn, error) {
		conn.Close()
		return nil, fmt.Errorf("greeting: %w", ErrUpstreamUnavailable)
	}
	if _, err := Connect(ctx2, g, acct, failing); !errors.Is(err, ErrUpstreamUnavailable) {
		t.Fatalf("failing login: %v", err)
	}
	if n := g.Limits.InUse("imap", acct.Identity); n != 0 {
		t.Errorf("a failed login kept its place: %d in use", n)
	}
	up2, err := Connect(ctx2, g, acct, ok)
	if err != nil {
		t.Fatalf("after the first session ended: %v", err)
	}
	up2.Close()
}
