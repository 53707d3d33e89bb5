package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/testkit"
)

var errReasonTest = errors.New("the account was removed")

// newScope returns a context like the one a Server gives a connection.
func newScope(t *testing.T) (context.Context, context.CancelCauseFunc) {
	t.Helper()
	ctx, cancel := context.WithCancelCause(context.Background())
	t.Cleanup(func() { cancel(nil) })
	return withConnScope(ctx, cancel, nil), cancel
}

// connectAs runs Connect for login with a login function that succeeds
// (or fails with loginErr) without speaking to the upstream.
func connectAs(t *testing.T, ctx context.Context, s *Sessions, login string, loginErr error) (net.Conn, error) {
	t.Helper()
	return connectVia(ctx, plainUpstream(t), s, login, loginErr)
}

// connectVia is connectAs with a given upstream; it may run on any goroutine.
func connectVia(ctx context.Context, d *Dialer, s *Sessions, login string, loginErr error) (net.Conn, error) {
	g := &Gateway{Tokens: &fakeTokens{current: "tok1"}, Sessions: s,
		Upstream: func(Account) (*Dialer, error) { return d, nil }}
	fn := func(ctx context.Context, conn net.Conn, _ *Dialer, _ Account, _ string) (net.Conn, error) {
		if loginErr != nil {
			conn.Close()
			return nil, loginErr
		}
		context.AfterFunc(ctx, func() { conn.Close() })
		return conn, nil
	}
	return Connect(ctx, g, Account{Login: login, Identity: login + "@contoso.com"}, fn)
}

func TestSessionsRegisterAndClose(t *testing.T) {
	var s Sessions
	aliceCtx, _ := newScope(t)
	alice2Ctx, _ := newScope(t)
	bobCtx, _ := newScope(t)
	for _, c := range []struct {
		ctx   context.Context
		login string
	}{{aliceCtx, "Alice"}, {alice2Ctx, "alice"}, {bobCtx, "bob"}} {
		if _, err := connectAs(t, c.ctx, &s, c.login, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := connectAs(t, aliceCtx, &s, "alice", nil); err != nil {
		t.Fatal(err) // a second upstream login of the same session counts once
	}
	if s.Count("ALICE") != 2 || s.Count("bob") != 1 || s.Len() != 3 {
		t.Fatalf("registered alice %d, bob %d, all %d; want 2, 1, 3", s.Count("alice"), s.Count("bob"), s.Len())
	}
	if n := s.Close("aLiCe", errReasonTest); n != 2 {
		t.Fatalf("Close(alice) = %d, want 2", n)
	}
	for _, ctx := range []context.Context{aliceCtx, alice2Ctx} {
		if !errors.Is(context.Cause(ctx), errReasonTest) {
			t.Errorf("alice's session ended with %v, want the reason", context.Cause(ctx))
		}
		if !errors.Is(SessionClosed(ctx), errReasonTest) {
			t.Errorf("SessionClosed = %v, want the reason", SessionClosed(ctx))
		}
	}
	if bobCtx.Err() != nil || SessionClosed(bobCtx) != nil {
		t.Fatal("closing alice ended bob's session")
	}
	if s.Count("alice") != 0 || s.Len() != 1 {
		t.Fatalf("after Close: alice %d, all %d; want 0, 1", s.Count("alice"), s.Len())
	}
	if n := s.Close("nobody", errReasonTest); n != 0 {
		t.Fatalf("Close(nobody) = %d", n)
	}
}

func TestSessionsForgetEndedConnections(t *testing.T) {
	var s Sessions
	ctx, cancel := newScope(t)
	if _, err := connectAs(t, ctx, &s, "alice", nil); err != nil {
		t.Fatal(err)
	}
	cancel(nil) // the connection ended
	testkit.Eventually(t, 5*time.Second, "the registration to go", func() bool { return s.Len() == 0 })

	// A failed upstream login leaves nothing registered.
	ctx2, _ := newScope(t)
	if _, err := connectAs(t, ctx2, &s, "alice", ErrUpstreamUnavailable); !errors.Is(err, ErrUpstreamUnavailable) {
		t.Fatalf("Connect = %v", err)
	}
	if s.Len() != 0 {
		t.Fatalf("%d sessions registered after a failed login", s.Len())
	}
	if s.Close("alice", errReasonTest) != 0 || ctx2.Err() != nil {
		t.Fatal("Close ended a connection whose login had failed")
	}
}

func TestSessionsWithoutRegistry(t *testing.T) {
	ctx, _ := newScope(t)
	if _, err := connectAs(t, ctx, nil, "alice", nil); err != nil {
		t.Fatalf("Connect without Sessions: %v", err)
	}
	var s *Sessions
	if s.Close("alice", errReasonTest) != 0 || s.Count("alice") != 0 || s.Len() != 0 {
		t.Fatal("a nil registry reported sessions")
	}
	// A context that no Server made (the check command, tests) is not registered.
	var reg Sessions
	if _, err := connectAs(t, context.Background(), &reg, "alice", nil); err != nil {
		t.Fatal(err)
	}
	if reg.Len() != 0 {
		t.Fatal("a connection without scope was registered")
	}
	if OnSessionClose(context.Background(), func(error) {}) || SessionClosed(context.Background()) != nil {
		t.Fatal("OnSessionClose or SessionClosed worked without a connection")
	}
}

func TestSessionsRefuseLoginCheckedBeforeClose(t *testing.T) {
	var s Sessions
	ctx, _ := newScope(t)
	noteAuthStart(ctx) // the password check began, against the old account
	s.Close("alice", errReasonTest)
	if _, err := connectAs(t, ctx, &s, "alice", nil); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("Connect after Close = %v, want ErrBadCredentials", err)
	}
	if s.Len() != 0 {
		t.Fatal("the refused login was registered")
	}
	// Other logins are not affected.
	other, _ := newScope(t)
	noteAuthStart(other)
	if _, err := connectAs(t, other, &s, "bob", nil); err != nil {
		t.Fatal(err)
	}
	// A password check that begins after the Close saw the new account.
	s.mu.Lock()
	closedAt := s.closed["alice"]
	s.mu.Unlock()
	for !time.Now().After(closedAt) {
	}
	noteAuthStart(ctx)
	if _, err := connectAs(t, ctx, &s, "alice", nil); err != nil {
		t.Fatalf("Connect after a new check = %v", err)
	}
}

func TestSessionsTombstonesExpire(t *testing.T) {
	var s Sessions
	s.Close("old", errReasonTest)
	s.mu.Lock()
	s.closed["old"] = time.Now().Add(-tombstoneTTL - time.Second)
	s.mu.Unlock()
	s.Close("new", errReasonTest)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.closed["old"]; ok || len(s.closed) != 1 {
		t.Fatalf("tombstones %v, want only new", s.closed)
	}
}

func TestOnSessionCloseReplacesCancel(t *testing.T) {
	var s Sessions
	ctx, _ := newScope(t)
	got := make(chan error, 1)
	if !OnSessionClose(ctx, func(reason error) { got <- reason }) {
		t.Fatal("OnSessionClose = false on a connection context")
	}
	if _, err := connectAs(t, ctx, &s, "alice", nil); err != nil {
		t.Fatal(err)
	}
	s.Close("alice", errReasonTest)
	if err := <-got; !errors.Is(err, errReasonTest) {
		t.Fatalf("hook got %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the connection's context was cancelled although the front handles the close")
	}
	if !errors.Is(SessionClosed(ctx), errReasonTest) {
		t.Fatalf("SessionClosed = %v", SessionClosed(ctx))
	}
}

// relayHandler logs a client in as the login on its first line and relays
// it to an echo upstream, the way the IMAP and POP3 fronts do.
func relayHandler(t *testing.T, s *Sessions, upstream *Dialer) *testHandler {
	g := &Gateway{Tokens: &fakeTokens{current: "tok1"}, Sessions: s,
		Upstream: func(Account) (*Dialer, error) { return upstream, nil }}
	return &testHandler{serve: func(ctx context.Context, c *Conn) {
		br := bufio.NewReader(c)
		login, err := br.ReadString('\n')
		if err != nil {
			return
		}
		acct := Account{Login: strings.TrimSpace(login), Identity: "x@contoso.com"}
		up, err := Connect(ctx, g, acct, func(_ context.Context, conn net.Conn, _ *Dialer, _ Account, _ string) (net.Conn, error) {
			return conn, nil
		})
		if err != nil {
			t.Errorf("Connect: %v", err)
			return
		}
		io.WriteString(c, "OK\n")
		Relay(ctx, c.Log, c.Conn, br, up, nil, RelayOptions{})
	}}
}

func TestSessionsCloseEndsRelay(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	upstreamEnded := make(chan string, 4)
	serveLoop(t, ln, func(c net.Conn) {
		br := bufio.NewReader(c)
		first, _ := br.ReadString('\n')
		io.WriteString(c, first)
		io.Copy(c, br)
		upstreamEnded <- strings.TrimSpace(first)
	})
	d, err := NewDialer(ln.Addr().String(), TLSStartTLS, "")
	if err != nil {
		t.Fatal(err)
	}
	var s Sessions
	addr, _ := startServer(t, &Server{Protocol: "imap", Handler: relayHandler(t, &s, d)}, false)

	clients := map[string]*bufio.Reader{}
	conns := map[string]net.Conn{}
	for _, login := range []string{"alice", "bob"} {
		c := dial(t, addr)
		br := bufio.NewReader(c)
		io.WriteString(c, login+"\n")
		if got, err := br.ReadString('\n'); got != "OK\n" {
			t.Fatalf("%s login: %q, %v", login, got, err)
		}
		echo(t, c, br, login+" first\n")
		clients[login], conns[login] = br, c
	}
	if n := s.Close("alice", errReasonTest); n != 1 {
		t.Fatalf("Close = %d, want 1", n)
	}
	if got, err := clients["alice"].ReadString('\n'); err == nil {
		t.Fatalf("alice's client read %q after Close, want the connection closed", got)
	}
	if who := <-upstreamEnded; who != "alice first" {
		t.Fatalf("upstream connection of %q ended, want alice's", who)
	}
	echo(t, conns["bob"], clients["bob"], "bob still here\n")
	testkit.Eventually(t, 5*time.Second, "alice's registration to go", func() bool { return s.Count("alice") == 0 && s.Count("bob") == 1 })
}

func TestSessionsConcurrent(t *testing.T) {
	var s Sessions
	d := plainUpstream(t)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithCancelCause(context.Background())
			ctx = withConnScope(ctx, cancel, nil)
			defer cancel(nil)
			login := fmt.Sprintf("user%d", i%4)
			noteAuthStart(ctx)
			// A Close of the same login from another goroutine may refuse
			// the login or end it while it dials: both are right.
			_, err := connectVia(ctx, d, &s, login, nil)
			if err != nil && !errors.Is(err, ErrBadCredentials) && !errors.Is(context.Cause(ctx), errReasonTest) {
				t.Error(err)
			}
			if i%3 == 0 {
				s.Close(login, errReasonTest)
			}
		}()
	}
	wg.Wait()
	testkit.Eventually(t, 5*time.Second, "every registration to go", func() bool { return s.Len() == 0 })
}
