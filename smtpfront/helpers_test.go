package smtpfront

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/proxy"
)

// Test accounts: the local login maps to an identity whose mailbox differs,
// so tests see that SMTP logs in as the identity, never the mailbox.
const (
	testLogin    = "erp-billing"
	testPassword = "correct horse"
	testIdentity = "alice@example.com"
	testMailbox  = "billing@example.com"
)

// fakeAuth is a proxy.Authenticator with one account and injectable errors.
type fakeAuth struct {
	mu  sync.Mutex
	err error // returned for any login when set
}

func (a *fakeAuth) setErr(err error) { a.mu.Lock(); a.err = err; a.mu.Unlock() }

func (a *fakeAuth) Authenticate(_ context.Context, login, password string, _ netip.Addr) (proxy.Account, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return proxy.Account{}, a.err
	}
	if login != testLogin || password != testPassword {
		return proxy.Account{}, proxy.ErrBadCredentials
	}
	return proxy.Account{Login: login, Identity: testIdentity, Mailbox: testMailbox, Provider: "m365"}, nil
}

// fakeTokens is a proxy.TokenSource handing out "tok-<identity>-<version>";
// Refresh moves to the next version.
type fakeTokens struct {
	mu        sync.Mutex
	version   map[string]int
	err       error // returned by Token and Refresh when set
	refreshes int
}

func (f *fakeTokens) setErr(err error) { f.mu.Lock(); f.err = err; f.mu.Unlock() }

func (f *fakeTokens) Token(_ context.Context, identity string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return "", f.err
	}
	return fmt.Sprintf("tok-%s-%d", identity, f.version[identity]), nil
}

func (f *fakeTokens) Refresh(_ context.Context, identity, stale string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return "", f.err
	}
	f.refreshes++
	if stale == fmt.Sprintf("tok-%s-%d", identity, f.version[identity]) {
		f.version[identity]++
	}
	return fmt.Sprintf("tok-%s-%d", identity, f.version[identity]), nil
}

// testLog collects a test's log output; an ERROR record fails the test.
type testLog struct {
	testkit.SyncBuffer
	t testing.TB
}

func newTestLog(t testing.TB) (*testLog, *slog.Logger) {
	l := &testLog{t: t}
	h := slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug})
	return l, slog.New(errorTrap{h, l})
}

// waitFor waits until the log contains all of parts (log lines are written
// as sessions end, shortly after a client has its reply).
func (l *testLog) waitFor(t testing.TB, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := l.String()
		missing := ""
		for _, p := range parts {
			if !strings.Contains(s, p) {
				missing = p
				break
			}
		}
		if missing == "" {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("log lacks %q:\n%s", missing, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type errorTrap struct {
	slog.Handler
	l *testLog
}

func (e errorTrap) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		e.l.t.Errorf("ERROR logged: %s", r.Message)
	}
	return e.Handler.Handle(ctx, r)
}

func (e errorTrap) WithAttrs(as []slog.Attr) slog.Handler {
	return errorTrap{e.Handler.WithAttrs(as), e.l}
}

func (e errorTrap) WithGroup(name string) slog.Handler {
	return errorTrap{e.Handler.WithGroup(name), e.l}
}

// harness is a front behind a real proxy.Server on loopback, in front of a
// fake upstream.
type harness struct {
	t      testing.TB
	front  *Server
	up     *fakeUpstream
	auth   *fakeAuth
	tokens *fakeTokens
	log    *testLog
	addr   string // the front's listener
	psrv   *proxy.Server
}

// upstreamMode says how the fake upstream offers TLS.
type upstreamMode int

const (
	upstreamStartTLS upstreamMode = iota // port 587 style (the default)
	upstreamImplicit                     // port 465 style
	upstreamNoTLS                        // no STARTTLS offered at all
)

// recordUpstreamWire, as an option of newHarness, has the fake upstream
// keep the chunks of envelope commands it reads (fakeUpstream.wire).
type recordUpstreamWire struct{}

// probeAtStart, as an option of newHarness, gives the front the fake
// upstream in Options.Upstreams, as the daemon does.
type probeAtStart struct{}

// newHarness starts a harness; opts are func(*Options) for the front,
// func(*Server) for the front before it serves, func(*proxy.Server) for
// the listener, an upstreamMode and
// recordUpstreamWire for the fake upstream.
func newHarness(t testing.TB, opts ...any) *harness {
	t.Helper()
	pki := testkit.NewPKI(t)
	h := &harness{t: t, auth: &fakeAuth{}, tokens: &fakeTokens{version: map[string]int{}}}
	var logger *slog.Logger
	h.log, logger = newTestLog(t)
	mode := upstreamStartTLS
	recordWire := false
	probe := false
	var frontOpts []func(*Options)
	var serverOpts []func(*proxy.Server)
	var frontHooks []func(*Server)
	for _, o := range opts {
		switch o := o.(type) {
		case upstreamMode:
			mode = o
		case recordUpstreamWire:
			recordWire = true
		case probeAtStart:
			probe = true
		case func(*Options):
			frontOpts = append(frontOpts, o)
		case func(*proxy.Server):
			serverOpts = append(serverOpts, o)
		case func(*Server):
			frontHooks = append(frontHooks, o)
		default:
			t.Fatalf("newHarness: unknown option %T", o)
		}
	}
	h.up = newFakeUpstream(t, pki.Server, mode, recordWire)
	dialMode := proxy.TLSStartTLS
	if mode == upstreamImplicit {
		dialMode = proxy.TLSImplicit
	}
	clientTLS := &tls.Config{RootCAs: pki.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS12,
		ClientSessionCache: tls.NewLRUClientSessionCache(8)}
	dialer := func() *proxy.Dialer {
		return &proxy.Dialer{Addr: h.up.addr, Mode: dialMode, TLS: clientTLS,
			DialTimeout: 5 * time.Second, HandshakeTimeout: 5 * time.Second}
	}
	gw := &proxy.Gateway{
		Auth:     h.auth,
		Tokens:   h.tokens,
		Explain:  func(err error, acct proxy.Account) (string, bool) { return why(err, diagnoseAccount(acct, "")) },
		Upstream: func(proxy.Account) (*proxy.Dialer, error) { return dialer(), nil },
	}
	fo := Options{Gateway: gw, AllowInsecureAuth: true, Log: logger, Domain: "front.test"}
	if probe {
		fo.Upstreams = func() []*proxy.Dialer { return []*proxy.Dialer{dialer()} }
	}
	for _, o := range frontOpts {
		o(&fo)
	}
	h.front = New(fo)
	for _, o := range frontHooks {
		o(h.front)
	}
	ln, err := proxy.Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	h.psrv = &proxy.Server{Protocol: "smtp", Handler: h.front, Log: logger,
		OnPanic: func(v any) { t.Errorf("panic: %v", v) }}
	for _, o := range serverOpts {
		o(h.psrv)
	}
	served := make(chan struct{})
	go func() { defer close(served); h.psrv.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.psrv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-served
		h.front.Close()
	})
	return h
}

// client dials the front and says EHLO.
func (h *harness) client() *smtp.Client {
	h.t.Helper()
	c, err := smtp.Dial(h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.test"); err != nil {
		h.t.Fatal(err)
	}
	return c
}

// loggedIn dials the front and logs in with AUTH PLAIN.
func (h *harness) loggedIn() *smtp.Client {
	h.t.Helper()
	c := h.client()
	if err := c.Auth(sasl.NewPlainClient("", testLogin, testPassword)); err != nil {
		h.t.Fatalf("AUTH PLAIN: %v", err)
	}
	return c
}

// send sends one message on c.
func send(c *smtp.Client, from string, to []string, data []byte) error {
	return c.SendMail(from, to, bytes.NewReader(data))
}

// testMessage returns a small CRLF message with a unique subject, a line
// starting with a dot and 8-bit text.
func testMessage(id string, bodyLines int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <billing@example.com>\r\nTo: <bob@example.net>\r\nSubject: %s\r\nMessage-ID: <%s@test>\r\n\r\n", id, id)
	for i := range bodyLines {
		fmt.Fprintf(&b, "line %d of %s\r\n", i, id)
		if i%7 == 3 {
			b.WriteString(".a line with a leading dot\r\n")
		}
	}
	b.WriteString("Grüße, ünïcödé\r\n")
	return b.Bytes()
}

// transcript drives a raw SMTP dialogue over one connection.
type transcript struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func (h *harness) transcript() *transcript {
	h.t.Helper()
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { conn.Close() })
	tc := &transcript{t: h.t, conn: conn, r: bufio.NewReader(conn)}
	tc.expect("220 ")
	return tc
}

// loggedInTranscript opens a raw client session that has said EHLO and
// logged in with AUTH PLAIN.
func (h *harness) loggedInTranscript() *transcript {
	tc := h.transcript()
	tc.login()
	return tc
}

// login says EHLO and logs in with AUTH PLAIN.
func (tc *transcript) login() {
	tc.t.Helper()
	tc.cmd("EHLO client.test", "250 ")
	tc.cmd("AUTH PLAIN "+plainIR("", testLogin, testPassword), "235")
}

// startTLS says EHLO and STARTTLS and goes on over TLS with client.
func (tc *transcript) startTLS(client *tls.Config) {
	tc.t.Helper()
	tc.cmd("EHLO client.test", "250 ")
	tc.cmd("STARTTLS", "220 ")
	tc.handshake(client)
}

// handshake goes on over TLS with client, from the next byte.
func (tc *transcript) handshake(client *tls.Config) {
	tc.t.Helper()
	tlsConn := tls.Client(tc.conn, client)
	tlsConn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tlsConn.Handshake(); err != nil {
		tc.t.Fatal(err)
	}
	tc.conn, tc.r = tlsConn, bufio.NewReader(tlsConn)
}

// data starts a message from one sender to one recipient: MAIL, RCPT and
// DATA, each accepted.
func (tc *transcript) data(from, to string) {
	tc.t.Helper()
	tc.cmd("MAIL FROM:<"+from+">", "250")
	tc.cmd("RCPT TO:<"+to+">", "250")
	tc.cmd("DATA", "354")
}

// write sends raw bytes.
func (tc *transcript) write(s string) {
	tc.t.Helper()
	tc.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := tc.conn.Write([]byte(s)); err != nil {
		tc.t.Fatalf("writing %q: %v", s, err)
	}
}

// reply reads one whole (possibly multi-line) reply.
func (tc *transcript) reply() (string, error) {
	tc.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	var all strings.Builder
	for {
		line, err := tc.r.ReadString('\n')
		all.WriteString(line)
		if err != nil {
			return all.String(), err
		}
		if len(line) < 4 || line[3] != '-' {
			return all.String(), nil
		}
	}
}

// expect reads one reply and checks that its last line starts with prefix.
func (tc *transcript) expect(prefix string) string {
	tc.t.Helper()
	r, err := tc.reply()
	if err != nil {
		tc.t.Fatalf("reading reply (want %q): %v (got %q)", prefix, err, r)
	}
	lines := strings.Split(strings.TrimSuffix(r, "\r\n"), "\r\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, prefix) {
		tc.t.Fatalf("reply %q, want %q", r, prefix)
	}
	return r
}

// cmd writes line (CRLF added) and expects a reply starting with prefix.
func (tc *transcript) cmd(line, prefix string) string {
	tc.t.Helper()
	tc.write(line + "\r\n")
	return tc.expect(prefix)
}

// expectClosed reads until the server closes the connection, bounded.
func (tc *transcript) expectClosed() string {
	tc.t.Helper()
	tc.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	var rest bytes.Buffer
	_, err := rest.ReadFrom(tc.r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		tc.t.Fatalf("connection still open; read %q", rest.String())
	}
	return rest.String()
}

// plainIR is the base64 AUTH PLAIN initial response of login and password.
func plainIR(authz, login, password string) string {
	return b64(authz + "\x00" + login + "\x00" + password)
}

type netConn = net.Conn

func dialTCP(addr string) (net.Conn, error) { return net.Dial("tcp", addr) }

// newRand is a reproducible random source for a test run.
func newRand(seed uint64) *mrand.Rand { return mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

// writeLikeServer returns the bytes go-smtp's server writes when a session's
// Mail returns e.
func writeLikeServer(t testing.TB, e error) string {
	t.Helper()
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return mailErrSession{e}, nil }))
	srv.ErrorLog = log.New(io.Discard, "", 0)
	ln := newChanListener()
	go srv.Serve(ln)
	defer ln.Close()
	a, b := net.Pipe()
	defer b.Close()
	if !ln.hand(t.Context(), a) {
		t.Fatal("handing the connection to the server failed")
	}
	tc := &transcript{t: t, conn: b, r: bufio.NewReader(b)}
	tc.expect("220 ")
	tc.cmd("EHLO x", "250 ")
	r := tc.cmd("MAIL FROM:<a@example.com>", "")
	return r
}

type mailErrSession struct{ err error }

func (s mailErrSession) Mail(string, *smtp.MailOptions) error { return s.err }
func (mailErrSession) Rcpt(string, *smtp.RcptOptions) error   { return nil }
func (mailErrSession) Data(io.Reader) error                   { return nil }
func (mailErrSession) Reset()                                 {}
func (mailErrSession) Logout() error                          { return nil }
