package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
)

// fakeTokens is a TokenSource that hands out "tok1", then "tok2" after a
// refresh, and records its calls.
type fakeTokens struct {
	mu         sync.Mutex
	current    string
	tokenErr   error
	refreshErr error
	refreshes  []string // stale tokens passed to Refresh
}

func (f *fakeTokens) Token(ctx context.Context, identity string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tokenErr != nil {
		return "", f.tokenErr
	}
	return f.current, nil
}

func (f *fakeTokens) Refresh(ctx context.Context, identity, stale string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refreshes = append(f.refreshes, stale)
	if f.refreshErr != nil {
		return "", f.refreshErr
	}
	f.current = fmt.Sprintf("tok%d", len(f.refreshes)+1)
	return f.current, nil
}

// plainUpstream listens on loopback and holds each connection open until
// the client hangs up; a Dialer in starttls mode reaches it without TLS.
func plainUpstream(t *testing.T) *Dialer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveLoop(t, ln, func(c net.Conn) { io.Copy(io.Discard, c) })
	d, err := NewDialer(ln.Addr().String(), TLSStartTLS, "")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestConnect(t *testing.T) {
	rejected := fmt.Errorf("AUTHENTICATE failed: %w", ErrUpstreamRejected)
	down := fmt.Errorf("greeting: %w", ErrUpstreamUnavailable)
	tests := []struct {
		name          string
		results       []error // what each login attempt returns
		tokenErr      error
		refreshErr    error
		upstreamErr   error
		wantErr       error // nil: success
		wantTokens    []string
		wantRefreshes []string
	}{
		{name: "first try", results: []error{nil}, wantTokens: []string{"tok1"}},
		{name: "rejected once, refreshed, success", results: []error{rejected, nil}, wantTokens: []string{"tok1", "tok2"}, wantRefreshes: []string{"tok1"}},
		{name: "rejected twice", results: []error{rejected, rejected}, wantErr: ErrUpstreamRejected, wantTokens: []string{"tok1", "tok2"}, wantRefreshes: []string{"tok1"}},
		{name: "unavailable is not retried", results: []error{down}, wantErr: ErrUpstreamUnavailable, wantTokens: []string{"tok1"}},
		{name: "token error", tokenErr: errTest, wantErr: errTest},
		{name: "refresh error", results: []error{rejected}, refreshErr: errTest, wantErr: errTest, wantTokens: []string{"tok1"}, wantRefreshes: []string{"tok1"}},
		{name: "no upstream", upstreamErr: errTest, wantErr: errTest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := plainUpstream(t)
			tokens := &fakeTokens{current: "tok1", tokenErr: tt.tokenErr, refreshErr: tt.refreshErr}
			g := &Gateway{Tokens: tokens, Upstream: func(acct Account) (*Dialer, error) {
				if acct.Identity != "billing@contoso.com" {
					t.Errorf("Upstream(%+v)", acct)
				}
				return d, tt.upstreamErr
			}}
			var usedTokens []string
			var conns []net.Conn
			login := func(ctx context.Context, conn net.Conn, ld *Dialer, acct Account, token string) (net.Conn, error) {
				if ld != d || acct.Mailbox != "shared@contoso.com" {
					t.Errorf("login got dialer %p (want %p), account %+v", ld, d, acct)
				}
				if len(usedTokens) >= len(tt.results) {
					t.Fatalf("login attempt %d, want at most %d", len(usedTokens)+1, len(tt.results))
				}
				err := tt.results[len(usedTokens)]
				usedTokens = append(usedTokens, token)
				conns = append(conns, conn)
				if err != nil {
					conn.Close()
					return nil, err
				}
				return conn, nil
			}
			acct := Account{Login: "erp", Identity: "billing@contoso.com", Mailbox: "shared@contoso.com", Provider: "m365"}
			conn, err := Connect(context.Background(), g, acct, login)
			if tt.wantErr == nil {
				if err != nil || conn == nil {
					t.Fatalf("Connect = %v, %v", conn, err)
				}
				conn.Close()
			} else if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Connect error = %v, want %v", err, tt.wantErr)
			}
			if !slices.Equal(usedTokens, tt.wantTokens) {
				t.Errorf("tokens used = %v, want %v", usedTokens, tt.wantTokens)
			}
			if !slices.Equal(tokens.refreshes, tt.wantRefreshes) {
				t.Errorf("refreshes = %v, want %v", tokens.refreshes, tt.wantRefreshes)
			}
			// Each attempt had a connection of its own.
			for i := 1; i < len(conns); i++ {
				if conns[i] == conns[i-1] {
					t.Error("a retry reused the rejected connection")
				}
			}
		})
	}
}

func TestConnectDialFailure(t *testing.T) {
	d := plainUpstream(t)
	d.Addr = "127.0.0.1:1" // nothing listens on port 1 of a test machine
	g := &Gateway{Tokens: &fakeTokens{current: "tok1"}, Upstream: func(Account) (*Dialer, error) { return d, nil }}
	login := func(context.Context, net.Conn, *Dialer, Account, string) (int, error) {
		t.Fatal("login called without a connection")
		return 0, nil
	}
	_, err := Connect(context.Background(), g, Account{Identity: "a@b"}, login)
	if !errors.Is(err, ErrUpstreamUnavailable) || !strings.Contains(err.Error(), "connecting to 127.0.0.1:1") {
		t.Errorf("Connect = %v, want ErrUpstreamUnavailable", err)
	}
}

var errTest = errors.New("test failure")
