package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/internal/xoauth2"
)

// recMetrics records what it is told, as "event protocol [args]" counts.
type recMetrics struct {
	mu     sync.Mutex
	counts map[string]int64
	waits  map[string]int // latency observations by "kind protocol"
}

func newRecMetrics() *recMetrics {
	return &recMetrics{counts: map[string]int64{}, waits: map[string]int{}}
}

func (m *recMetrics) add(key string, n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.counts[key] += n
}

func (m *recMetrics) get(key string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counts[key]
}

func (m *recMetrics) observed(key string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.waits[key]
}

func (m *recMetrics) ConnOpened(p string)          { m.add("opened "+p, 1) }
func (m *recMetrics) ConnClosed(p string)          { m.add("closed "+p, 1) }
func (m *recMetrics) ConnRefused(p string)         { m.add("refused "+p, 1) }
func (m *recMetrics) Login(p, result string)       { m.add("login "+p+" "+result, 1) }
func (m *recMetrics) Throttled(p string)           { m.add("throttled "+p, 1) }
func (m *recMetrics) IdentityLimited(p string)     { m.add("limited "+p, 1) }
func (m *recMetrics) Relayed(p, d string, n int64) { m.add("relayed "+p+" "+d, n) }
func (m *recMetrics) UpstreamDialed(p string, d time.Duration) {
	m.observe("dial "+p, d)
}
func (m *recMetrics) UpstreamAuthenticated(p string, d time.Duration) {
	m.observe("auth "+p, d)
}

func (m *recMetrics) observe(key string, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d >= 0 {
		m.waits[key]++
	}
}

var _ Metrics = (*recMetrics)(nil)

func newJSONLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestServerCountsConnections(t *testing.T) {
	m := newRecMetrics()
	release := make(chan struct{})
	ended := make(chan struct{}, 4)
	h := &testHandler{conns: make(chan *Conn, 4), serve: func(ctx context.Context, c *Conn) {
		<-release
		ended <- struct{}{}
	}}
	s := &Server{Protocol: "imap", Handler: h, MaxConns: 2, Metrics: m}
	addr, _ := startServer(t, s, false)
	c1, c2 := dial(t, addr), dial(t, addr)
	<-h.conns
	<-h.conns
	if got := m.get("opened imap"); got != 2 {
		t.Fatalf("opened = %d, want 2", got)
	}
	c3 := dial(t, addr)
	if line, err := bufio.NewReader(c3).ReadString('\n'); line != "BUSY\r\n" {
		t.Fatalf("third connection got %q, %v; want the busy reply", line, err)
	}
	if got := m.get("refused imap"); got != 1 {
		t.Errorf("refused = %d, want 1", got)
	}
	close(release)
	<-ended
	<-ended
	c1.Close()
	c2.Close()
	// Shutdown returns once every connection goroutine has ended, and each
	// counts its close before that.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if opened, closed := m.get("opened imap"), m.get("closed imap"); opened != 2 || closed != 2 {
		t.Errorf("opened %d, closed %d; want 2 and 2", opened, closed)
	}
}

func TestRelayCountsBytes(t *testing.T) {
	for _, mode := range relayModes {
		t.Run(mode, func(t *testing.T) {
			m := newRecMetrics()
			e := newRelayEnv(t, mode)
			meter := Meter{m, "imap"}
			done := make(chan RelayStats, 1)
			go func() {
				r := newRelay(e.client, e.upstream, RelayOptions{}, e.splice)
				r.c2u.m, r.u2c.m = meter, meter
				done <- r.run(context.Background(), nil, nil, nil)
			}()
			io.WriteString(e.clientPeer, "a NOOP\r\n")
			readN(t, e.upstreamPeer, 8)
			io.WriteString(e.upstreamPeer, "a OK done\r\n")
			readN(t, e.clientPeer, 11)
			e.clientPeer.Close()
			e.upstreamPeer.Close()
			st := <-done
			if got := m.get("relayed imap " + ClientToUpstream); got != 8 || st.ClientToUpstream != 8 {
				t.Errorf("client to upstream: metric %d, stats %d; want 8", got, st.ClientToUpstream)
			}
			if got := m.get("relayed imap " + UpstreamToClient); got != 11 || st.UpstreamToClient != 11 {
				t.Errorf("upstream to client: metric %d, stats %d; want 11", got, st.UpstreamToClient)
			}
		})
	}
}

func TestRelayCountsOnItsMeter(t *testing.T) {
	m := newRecMetrics()
	c, cp := testkit.TCPPair(t)
	up, u := testkit.TCPPair(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		Relay(context.Background(), nil, c, bufio.NewReader(strings.NewReader("")), u, nil, RelayOptions{Meter: Meter{m, "pop3"}})
	}()
	io.WriteString(cp, "STAT\r\n")
	readN(t, up, 6)
	cp.Close()
	up.Close()
	<-done
	if got := m.get("relayed pop3 " + ClientToUpstream); got != 6 {
		t.Errorf("relayed = %d, want 6", got)
	}
}

func TestConnectObservesLatencies(t *testing.T) {
	rejected := fmt.Errorf("no: %w", ErrUpstreamRejected)
	tests := []struct {
		name      string
		results   []error
		dials     int
		auths     int
		unreached bool
	}{
		{name: "success", results: []error{nil}, dials: 1, auths: 1},
		{name: "retry then success", results: []error{rejected, nil}, dials: 2, auths: 1},
		{name: "rejected twice", results: []error{rejected, rejected}, dials: 2, auths: 0},
		{name: "dial fails", unreached: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newRecMetrics()
			d := plainUpstream(t)
			if tt.unreached {
				d.Addr = "127.0.0.1:1"
			}
			g := &Gateway{Tokens: &fakeTokens{current: "tok1"}, Upstream: func(Account) (*Dialer, error) { return d, nil },
				Meter: Meter{m, "imap"}}
			attempt := 0
			login := func(_ context.Context, conn net.Conn, _ *Dialer, _ Account, _ string) (net.Conn, error) {
				err := tt.results[attempt]
				attempt++
				if err != nil {
					conn.Close()
					return nil, err
				}
				return conn, nil
			}
			if conn, err := Connect(context.Background(), g, Account{Identity: "a@b"}, login); err == nil {
				conn.Close()
			}
			if got := m.observed("dial imap"); got != tt.dials {
				t.Errorf("dial observations = %d, want %d", got, tt.dials)
			}
			if got := m.observed("auth imap"); got != tt.auths {
				t.Errorf("auth observations = %d, want %d", got, tt.auths)
			}
		})
	}
}

// TestLoginFailedCountsRefusals: the Gateway's Meter counts a login the
// credentials refused for throttling and one refused at the identity
// limit, each once, and nothing for a wrong password.
func TestLoginFailedCountsRefusals(t *testing.T) {
	m := newRecMetrics()
	g := &Gateway{Meter: Meter{m, "smtp"}}
	e := newCredEnv(t, CredentialOptions{AddrLimit: 2, LoginLimit: -1, BaseDelay: -1})
	ctx := context.Background()
	for range 2 {
		_, err := e.c.Authenticate(ctx, "alice", "wrong", addrA)
		if err != ErrBadCredentials {
			t.Fatalf("Authenticate = %v, want ErrBadCredentials", err)
		}
		g.LoginFailed(ctx, nil, "alice", Account{}, err)
	}
	if got := m.get("throttled smtp"); got != 0 {
		t.Fatalf("throttled = %d before the limit", got)
	}
	_, err := e.c.Authenticate(ctx, "alice", "secret", addrA)
	if !errors.Is(err, ErrThrottled) {
		t.Fatalf("Authenticate = %v, want ErrThrottled", err)
	}
	g.LoginFailed(ctx, nil, "alice", Account{}, err)
	if got := m.get("throttled smtp"); got != 1 {
		t.Errorf("throttled = %d, want 1", got)
	}
	if got := m.get("limited smtp"); got != 0 {
		t.Errorf("identity limited = %d before a refusal at the limit", got)
	}
	g.LoginFailed(ctx, nil, "alice", Account{}, &IdentityLimitError{Identity: "alice@contoso.com", Limit: 1})
	if got := m.get("limited smtp"); got != 1 {
		t.Errorf("identity limited = %d, want 1", got)
	}
	if got := m.get("login smtp " + LoginFailure); got != 3 {
		t.Errorf("login failures = %d, want 3", got)
	}
}

// echoBlob is an XOAUTH2 initial response, as an echoing upstream quotes it.
var echoBlob = xoauth2.Encode("billing@contoso.com", "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")

func TestAuditLogin(t *testing.T) {
	tests := []struct {
		name  string
		audit LoginAudit
		want  map[string]any
	}{
		{
			name:  "success",
			audit: LoginAudit{Result: LoginSuccess, Login: "erp", Identity: "billing@contoso.com"},
			want:  map[string]any{"result": "success", "login": "erp", "identity": "billing@contoso.com", "reason": ""},
		},
		{
			name:  "failure with context",
			audit: LoginAudit{Result: LoginFailure, Login: "erp", Reason: "bad local credentials", Attrs: nil},
			want:  map[string]any{"result": "failure", "login": "erp", "identity": "", "reason": "bad local credentials"},
		},
		{
			// An upstream that echoes the AUTHENTICATE command in its
			// refusal: the error and the explanation quote it.
			name: "echoed xoauth2 response is redacted",
			audit: LoginAudit{Result: LoginFailure, Login: "erp", Reason: "the upstream refused the token", Attrs: []slog.Attr{
				slog.Any("err", fmt.Errorf("upstream login: %w", errors.New(`imap server replied "a NO you sent: a AUTHENTICATE XOAUTH2 `+echoBlob+`"`))),
				slog.String("why", "The upstream said: 535 5.7.8 "+echoBlob),
			}},
			want: map[string]any{"err": `upstream login: imap server replied "a NO you sent: a AUTHENTICATE XOAUTH2 ***"`, "why": "The upstream said: 535 5.7.8 ***"},
		},
		{
			name:  "long login is cut",
			audit: LoginAudit{Result: LoginFailure, Login: strings.Repeat("x", 100), Reason: "bad local credentials"},
			want:  map[string]any{"login": strings.Repeat("x", maxLoggedLoginLength) + "..."},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := new(logBuffer)
			m := newRecMetrics()
			g := &Gateway{Meter: Meter{m, "imap"}}
			g.AuditLogin(context.Background(), newJSONLogger(logs).With("proto", "imap"), tt.audit)
			recs := logs.records(t)
			if len(recs) != 1 {
				t.Fatalf("%d log records, want 1", len(recs))
			}
			r := recs[0]
			if r["msg"] != "login" || r["level"] != "INFO" || r["proto"] != "imap" {
				t.Errorf("record %v: want msg login at INFO with the logger's proto", r)
			}
			for k, v := range tt.want {
				if r[k] != v {
					t.Errorf("%s = %v, want %v", k, r[k], v)
				}
			}
			if got := m.get("login imap " + tt.audit.Result); got != 1 {
				t.Errorf("login metric %s = %d, want 1", tt.audit.Result, got)
			}
		})
	}
	// Without a logger, a Meter or a Gateway nothing breaks.
	(&Gateway{}).AuditLogin(context.Background(), nil, LoginAudit{Result: LoginError})
	(*Gateway)(nil).AuditLogin(context.Background(), nil, LoginAudit{Result: LoginError})
}
