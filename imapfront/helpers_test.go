package imapfront

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/proxy"
)

// ioTimeout bounds every read and write of a test client, so a broken server
// fails the test instead of hanging it.
const ioTimeout = 10 * time.Second

// Local credentials every fake authenticator accepts.
const (
	testLogin    = "alice"
	testPassword = "secret"
	testIdentity = "alice@example.com"
	testMailbox  = "alice@example.com"
)

// replyUnavailable is the reply (without its tag) to a login that failed
// because something is down (failureReply of the temporary class).
const replyUnavailable = "NO [UNAVAILABLE] Service temporarily unavailable, try again later."

// creds is one call of the fake authenticator.
type creds struct{ login, password string }

// fakeAuth accepts testLogin/testPassword and records every call.
type fakeAuth struct {
	mu    sync.Mutex
	calls []creds
	err   error // returned instead of checking when set
}

func (a *fakeAuth) Authenticate(ctx context.Context, login, password string, remote netip.Addr) (proxy.Account, error) {
	a.mu.Lock()
	a.calls = append(a.calls, creds{login, password})
	err := a.err
	a.mu.Unlock()
	if err != nil {
		return proxy.Account{}, err
	}
	if login != testLogin || password != testPassword {
		return proxy.Account{}, proxy.ErrBadCredentials
	}
	return proxy.Account{Login: login, Identity: testIdentity, Mailbox: testMailbox, Provider: "test"}, nil
}

func (a *fakeAuth) last() (creds, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.calls) == 0 {
		return creds{}, 0
	}
	return a.calls[len(a.calls)-1], len(a.calls)
}

// fakeTokens hands out token, and refreshed on Refresh, counting calls.
type fakeTokens struct {
	token, refreshed string
	tokenErr         error
	refreshErr       error
	tokens, refresh  atomic.Int32
}

func (f *fakeTokens) Token(ctx context.Context, identity string) (string, error) {
	f.tokens.Add(1)
	return f.token, f.tokenErr
}

func (f *fakeTokens) Refresh(ctx context.Context, identity, stale string) (string, error) {
	f.refresh.Add(1)
	return f.refreshed, f.refreshErr
}

// front is a running Server on a loopback listener.
type front struct {
	t    *testing.T
	addr string
	logs *testkit.SyncBuffer
	wg   sync.WaitGroup
}

// startFront serves opts on 127.0.0.1 until the test ends. A panic in a
// session fails the test.
func startFront(t *testing.T, opts Options) *front {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &front{t: t, addr: ln.Addr().String(), logs: &testkit.SyncBuffer{}}
	log := slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	var ids atomic.Uint64
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			id := ids.Add(1)
			remote := nc.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
			c := &proxy.Conn{Conn: nc, ID: id, Remote: remote, Log: log.With("cid", id)}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer nc.Close()
				defer func() {
					if v := recover(); v != nil {
						t.Errorf("panic in session: %v\n%s", v, debug.Stack())
					}
				}()
				srv.ServeConn(ctx, c)
			}()
		}
	}()
	t.Cleanup(func() {
		cancel()
		ln.Close()
		f.wg.Wait()
		if t.Failed() {
			t.Logf("server log:\n%s", f.logs)
		}
	})
	return f
}

// client is a raw IMAP client for transcript tests.
type client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

// dial connects and reads the greeting.
func (f *front) dial() *client {
	f.t.Helper()
	c := f.dialNoGreeting()
	c.expect(greeting)
	return c
}

func (f *front) dialNoGreeting() *client {
	f.t.Helper()
	return dialClient(f.t, f.addr)
}

// dialClient connects to addr, with every read and write bounded by
// ioTimeout; the connection closes when the test ends at the latest.
func dialClient(t *testing.T, addr string) *client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	if err := nc.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatal(err)
	}
	return &client{t: t, c: nc, br: bufio.NewReader(nc)}
}

// send writes raw bytes, exactly as given.
func (c *client) send(raw string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, raw); err != nil {
		c.t.Fatalf("writing %q: %v", raw, err)
	}
}

// line reads one line without CRLF.
func (c *client) line() (string, error) {
	l, err := c.br.ReadString('\n')
	if err != nil {
		return l, err
	}
	if !strings.HasSuffix(l, "\r\n") {
		return l, fmt.Errorf("line %q does not end with CRLF", l)
	}
	return strings.TrimSuffix(l, "\r\n"), nil
}

// expect reads one line per want and compares exactly; a want ending in
// "..." is a prefix.
func (c *client) expect(wants ...string) {
	c.t.Helper()
	for _, want := range wants {
		got, err := c.line()
		if err != nil {
			c.t.Fatalf("reading, want %q: %v (got %q)", want, err, got)
		}
		if p, ok := strings.CutSuffix(want, "..."); ok {
			if !strings.HasPrefix(got, p) {
				c.t.Fatalf("got %q, want %q", got, want)
			}
			continue
		}
		if got != want {
			c.t.Fatalf("got %q, want %q", got, want)
		}
	}
}

// until reads lines until one starts with prefix and returns it.
func (c *client) until(prefix string) string {
	c.t.Helper()
	for {
		got, err := c.line()
		if err != nil {
			c.t.Fatalf("reading, want %q...: %v", prefix, err)
		}
		if strings.HasPrefix(got, prefix) {
			return got
		}
	}
}

// expectClosed reads until EOF, failing on any further line.
func (c *client) expectClosed() {
	c.t.Helper()
	got, err := c.br.ReadString('\n')
	if err == nil {
		c.t.Fatalf("got %q, want the connection closed", got)
	}
	if !errors.Is(err, io.EOF) && !isReset(err) {
		c.t.Fatalf("want the connection closed, got %v (%q)", err, got)
	}
}

// isReset reports a connection reset by the server (it closed with unread
// input, which is what a server that stops reading does).
func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}

// pipeTCP returns both ends of a loopback TCP connection, the client's
// reads and writes bounded by ioTimeout.
func pipeTCP(t *testing.T) (server, client net.Conn) {
	t.Helper()
	server, client = testkit.TCPPair(t)
	if err := client.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatal(err)
	}
	return server, client
}

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }

func contextWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	return context.WithCancel(t.Context())
}
