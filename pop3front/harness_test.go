package pop3front

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/diagnose"
	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/proxy"
	"github.com/xoauthd/xoauthd/tokens"
)

// ioTimeout guards every read and write of a test client, so a broken
// server fails the test instead of hanging it. It is not a timing assertion.
const ioTimeout = 10 * time.Second

// fakeAccount is a local account of the fake authenticator.
type fakeAccount struct {
	password string
	acct     proxy.Account
}

// fakeAuth is a proxy.Authenticator over a fixed table.
type fakeAuth struct {
	mu        sync.Mutex
	accounts  map[string]fakeAccount
	throttled map[string]bool
	calls     int
}

func (a *fakeAuth) Authenticate(ctx context.Context, login, password string, remote netip.Addr) (proxy.Account, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	if !remote.IsLoopback() {
		return proxy.Account{}, errors.New("fake authenticator: remote address not loopback")
	}
	if a.throttled[login] {
		return proxy.Account{}, proxy.ErrThrottled
	}
	fa, ok := a.accounts[login]
	if !ok || fa.password != password {
		return proxy.Account{}, proxy.ErrBadCredentials
	}
	return fa.acct, nil
}

// fakeIdentity is what the fake token source does for one identity.
type fakeIdentity struct {
	token      string // Token's answer
	refreshed  string // Refresh's answer
	err        error  // Token's error
	refreshErr error
}

// fakeTokens is a proxy.TokenSource over a fixed table.
type fakeTokens struct {
	mu         sync.Mutex
	ids        map[string]fakeIdentity
	tokenCalls int
	refreshes  []string // the stale tokens Refresh was called with
}

func (f *fakeTokens) Token(ctx context.Context, identity string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokenCalls++
	id, ok := f.ids[identity]
	if !ok {
		return "", errors.New("fake token source: unknown identity")
	}
	return id.token, id.err
}

func (f *fakeTokens) Refresh(ctx context.Context, identity, stale string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refreshes = append(f.refreshes, stale)
	id := f.ids[identity]
	return id.refreshed, id.refreshErr
}

func (f *fakeTokens) set(identity string, id fakeIdentity) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ids[identity] = id
}

func (f *fakeTokens) counts() (tokenCalls int, refreshes []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tokenCalls, append([]string(nil), f.refreshes...)
}

// Secrets of the test accounts; no log line may contain them.
const (
	alicePassword = "alice-secret"
	bobPassword   = "bob pass with spaces"
	aliceToken    = "tok-alice-0123456789"
	mailbox       = "alice@example.test"
)

var testSecrets = []string{alicePassword, bobPassword, aliceToken, "stale-token", "other-token", "hunter2"}

// harness is a pop3front Server behind a real proxy.Server on loopback, with
// fake local accounts and tokens and a fake upstream.
//
// Accounts: alice (works), bob (password with spaces; same identity),
// carol (token needs a new login), dave (throttled), erin (identity
// provider down), mallory (shared mailbox of alice's identity).
type harness struct {
	t      testing.TB
	addr   string
	auth   *fakeAuth
	tokens *fakeTokens
	up     *memUpstream
	logs   *testkit.SyncBuffer
	server *proxy.Server
	cancel context.CancelFunc
	done   chan struct{}
	closed sync.Once
	panics atomic.Int64 // panics recovered by the proxy.Server
	drop   [][]byte     // the upstream maildrop; nil: smallDrop
	// dialer, when set, replaces the upstream's dialer.
	dialer atomic.Pointer[proxy.Dialer]
	// logsMayHoldSecrets turns off the check that no secret was logged (a
	// fuzzer may send a password as the user name, which is logged).
	logsMayHoldSecrets bool
}

type harnessOption func(*Options, *proxy.Server, *harness)

func withPreAuthTimeout(d time.Duration) harnessOption {
	return func(o *Options, _ *proxy.Server, _ *harness) { o.PreAuthTimeout = d }
}

func withMaxConns(n int) harnessOption {
	return func(_ *Options, s *proxy.Server, _ *harness) { s.MaxConns = n }
}

// withDrop puts msgs in the upstream maildrop instead of smallDrop's.
func withDrop(msgs ...[]byte) harnessOption {
	return func(_ *Options, _ *proxy.Server, h *harness) { h.drop = msgs }
}

func withStartTLSUpstream() harnessOption {
	return func(_ *Options, _ *proxy.Server, h *harness) { h.up = newMemUpstream(h.t, true) }
}

func newHarness(t testing.TB, opts ...harnessOption) *harness {
	t.Helper()
	h := &harness{t: t, logs: &testkit.SyncBuffer{}, done: make(chan struct{})}
	h.auth = &fakeAuth{
		accounts: map[string]fakeAccount{
			"alice":   {alicePassword, proxy.Account{Login: "alice", Identity: mailbox, Mailbox: mailbox, Provider: "m365"}},
			"bob":     {bobPassword, proxy.Account{Login: "bob", Identity: mailbox, Mailbox: mailbox, Provider: "m365"}},
			"carol":   {"carol-secret", proxy.Account{Login: "carol", Identity: "carol@example.test", Mailbox: "carol@example.test"}},
			"erin":    {"erin-secret", proxy.Account{Login: "erin", Identity: "erin@example.test", Mailbox: "erin@example.test"}},
			"mallory": {"mallory-secret", proxy.Account{Login: "mallory", Identity: mailbox, Mailbox: "shared@example.test"}},
		},
		throttled: map[string]bool{"dave": true},
	}
	h.tokens = &fakeTokens{ids: map[string]fakeIdentity{
		mailbox: {token: aliceToken, refreshed: aliceToken},
		// Token errors as the daemon's token adapter hands them on: the
		// proxy's sentinel around the token package's error.
		"carol@example.test": {err: fmt.Errorf("%w: %w", proxy.ErrSignInNeeded, &tokens.NeedsLoginError{
			Identity: "carol@example.test", Code: "AADSTS700082", Meaning: "refresh token expired",
			Fix: `run "xoauthd login carol@example.test"`})},
		"erin@example.test": {err: fmt.Errorf("%w: %w", proxy.ErrProviderUnavailable,
			&tokens.TemporaryError{Identity: "erin@example.test", Meaning: "identity provider unreachable"})},
	}}
	opt := Options{}
	srv := &proxy.Server{
		Protocol: "pop3",
		Log:      slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnPanic:  func(any) { h.panics.Add(1) },
	}
	for _, o := range opts {
		o(&opt, srv, h)
	}
	if h.up == nil {
		h.up = newMemUpstream(t, false)
	}
	h.up.allow(aliceToken, mailbox)
	if h.drop == nil {
		h.drop = smallDrop()
	}
	h.up.fill(t, mailbox, h.drop...)
	opt.Gateway = &proxy.Gateway{
		Auth:    h.auth,
		Tokens:  h.tokens,
		Explain: explain,
		Upstream: func(proxy.Account) (*proxy.Dialer, error) {
			if d := h.dialer.Load(); d != nil {
				return d, nil
			}
			return h.up.dialer(), nil
		},
	}
	srv.Handler = New(opt)
	h.server = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() {
		defer close(h.done)
		srv.Serve(ctx, ln)
	}()
	t.Cleanup(h.close)
	return h
}

// close shuts the server down, waiting for every session to end, and checks
// that no secret reached the log. Only the first call does anything.
func (h *harness) close() { h.closed.Do(h.shutdown) }

func (h *harness) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	if err := h.server.Shutdown(ctx); err != nil {
		h.t.Errorf("shutting down: %v", err)
	}
	h.cancel()
	<-h.done
	if n := h.panics.Load(); n > 0 {
		h.t.Errorf("%d panics serving connections", n)
	}
	logs := h.logs.String()
	for _, s := range testSecrets {
		if !h.logsMayHoldSecrets && strings.Contains(logs, s) {
			h.t.Errorf("log contains the secret %q:\n%s", s, logs)
		}
	}
	if h.t.Failed() {
		h.t.Logf("server log:\n%s", logs)
	}
}

// smallDrop is the default maildrop: two small messages, one with a line
// that needs dot-stuffing.
func smallDrop() [][]byte {
	return [][]byte{
		[]byte("Subject: one\r\n\r\nhello\r\n"),
		[]byte("Subject: two\r\n\r\n.dotted line\r\n"),
	}
}

// client is a test POP3 client speaking line by line.
type client struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func (h *harness) dial(t testing.TB) *client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", h.addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn, r: bufio.NewReader(conn)}
}

// dialGreeted connects and reads the greeting.
func (h *harness) dialGreeted(t testing.TB) *client {
	t.Helper()
	c := h.dial(t)
	c.expect(strings.TrimSuffix(greeting, "\r\n"))
	return c
}

// write sends raw bytes.
func (c *client) write(s string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("writing %q: %v", s, err)
	}
}

// send sends one command line.
func (c *client) send(line string) { c.t.Helper(); c.write(line + "\r\n") }

// readLine reads one line without CRLF.
func (c *client) readLine() (string, error) {
	c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	line, err := c.r.ReadString('\n')
	if err != nil {
		return line, err
	}
	if !strings.HasSuffix(line, "\r\n") {
		c.t.Errorf("line %q does not end in CRLF", line)
	}
	return strings.TrimSuffix(line, "\r\n"), nil
}

// expect reads one line and checks it.
func (c *client) expect(want string) {
	c.t.Helper()
	got, err := c.readLine()
	if err != nil {
		c.t.Fatalf("reading, want %q: %v (got %q)", want, err, got)
	}
	if got != want {
		c.t.Fatalf("got %q, want %q", got, want)
	}
}

// expectPrefix reads one line and checks that it starts with prefix (for
// the upstream's replies, whose text is its own).
func (c *client) expectPrefix(prefix string) {
	c.t.Helper()
	got, err := c.readLine()
	if err != nil {
		c.t.Fatalf("reading, want %q...: %v (got %q)", prefix, err, got)
	}
	if !strings.HasPrefix(got, prefix) {
		c.t.Fatalf("got %q, want %q...", got, prefix)
	}
}

// cmd sends a line and expects one reply line.
func (c *client) cmd(line, want string) {
	c.t.Helper()
	c.send(line)
	c.expect(want)
}

// expectClosed reads until the server closes the connection (EOF or
// reset), then closes the client's end as a client does; it fails when a
// line arrives instead.
func (c *client) expectClosed() {
	c.t.Helper()
	defer c.conn.Close()
	c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	line, err := c.r.ReadString('\n')
	if err == nil {
		c.t.Fatalf("got %q, want the connection closed", line)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("connection still open after %v", ioTimeout)
	}
}

// multiline reads a multi-line response body up to ".", undoing the
// dot-stuffing, and returns it with CRLF line ends.
func (c *client) multiline() []byte {
	c.t.Helper()
	var b bytes.Buffer
	for {
		c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
		line, err := c.r.ReadBytes('\n')
		if err != nil {
			c.t.Fatalf("reading multi-line response: %v", err)
		}
		if string(line) == ".\r\n" {
			return b.Bytes()
		}
		if line[0] == '.' {
			line = line[1:]
		}
		b.Write(line)
	}
}

// explain is the daemon's proxy.Explainer: package diagnose's words.
func explain(err error, acct proxy.Account) (string, bool) {
	return diagnose.Why(err, diagnose.Account{Identity: acct.Identity, Mailbox: acct.Mailbox})
}
