package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/memupstream"
	"github.com/xoauthd/xoauthd/proxy"

	"github.com/xoauthd/xoauthd/internal/testkit"
)

// fakeHash is a well-formed argon2id PHC string for password; the tests'
// Verify compares against it instead of running argon2id.
func fakeHash(password string) string {
	sum := sha256.Sum256([]byte(password))
	enc := base64.RawStdEncoding
	return "$argon2id$v=19$m=24576,t=2,p=1$" + enc.EncodeToString(sum[:16]) + "$" + enc.EncodeToString(sum[:])
}

// fakeTokens hands out one token per identity.
type fakeTokens struct{}

func (fakeTokens) Token(_ context.Context, identity string) (string, error) {
	return "token-" + identity, nil
}

func (fakeTokens) Refresh(_ context.Context, identity, _ string) (string, error) {
	return "token-" + identity, nil
}

// account is one entry of accounts: in a test configuration.
type account struct{ login, password string }

// env is a daemon in front of an in-memory IMAP upstream, over a
// configuration file in a temporary directory.
type env struct {
	t       *testing.T
	path    string
	up      *memupstream.Server
	d       *Daemon
	logs    *testkit.SyncBuffer
	mu      sync.Mutex
	results []string // OnReload results
}

func newEnv(t *testing.T, servers []string, accounts []account) *env {
	t.Helper()
	e := &env{t: t, path: filepath.Join(t.TempDir(), "xoauthd.yaml"), logs: &testkit.SyncBuffer{}}
	e.up = memupstream.MustStart(t, memupstream.Options{})
	for _, a := range []string{"alice", "bob", "carol"} {
		e.up.AddUser(a + "@contoso.test")
	}
	e.write(servers, accounts)
	cfg, err := config.Load(e.path)
	if err != nil {
		t.Fatal(err)
	}
	verify := func(phc, password string) (bool, error) { return phc == fakeHash(password), nil }
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.d, err = New(cfg, Options{
		Log:         log,
		Tokens:      fakeTokens{},
		Credentials: proxy.CredentialOptions{Verify: verify, BaseDelay: -1},
		OnPanic:     func(v any) { t.Errorf("recovered panic: %v", v) },
		OnReload: func(result string) {
			e.mu.Lock()
			e.results = append(e.results, result)
			e.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := e.d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = e.d.Shutdown(sctx)
		cancel()
		if t.Failed() {
			t.Logf("xoauthd log:\n%s", e.logs.String())
		}
	})
	return e
}

// imapServer is a servers: entry for listen relaying to the upstream.
func (e *env) imapServer(listen string, extra string) string {
	return fmt.Sprintf(`{protocol: imap, listen: "%s", upstream: "%s", ca_file: "%s"%s}`, listen, e.up.Addr(), e.up.CAFile(), extra)
}

func (e *env) write(servers []string, accounts []account) {
	e.t.Helper()
	if servers == nil {
		servers = []string{e.imapServer("127.0.0.1:0", "")}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "providers:\n  test: {type: microsoft, client_id: 3f2a5d1c-8b7e-4c2a-9e61-0d4b7a9c5e21}\nservers:\n")
	for _, s := range servers {
		fmt.Fprintf(&b, "  - %s\n", s)
	}
	b.WriteString("accounts:\n")
	for _, a := range accounts {
		fmt.Fprintf(&b, "  - {login: %s, password_hash: \"%s\", identity: %s@contoso.test}\n", a.login, fakeHash(a.password), a.login)
	}
	if err := os.WriteFile(e.path, []byte(b.String()), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// reload rewrites the file and reloads it as SIGHUP does.
func (e *env) reload(servers []string, accounts []account) {
	e.t.Helper()
	e.write(servers, accounts)
	if err := e.d.ReloadFile(e.path); err != nil {
		e.t.Fatalf("reload: %v", err)
	}
}

func (e *env) lastResult() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.results) == 0 {
		return ""
	}
	return e.results[len(e.results)-1]
}

// listenAddrs returns the bound addresses of the running listeners.
func (e *env) listenAddrs() []string {
	e.d.mu.Lock()
	defer e.d.mu.Unlock()
	var addrs []string
	for _, l := range e.d.listeners {
		addrs = append(addrs, l.ln.Addr().String())
	}
	return addrs
}

// login opens an IMAP session through the daemon at addr.
func (e *env) login(addr, login, password string) (*imapclient.Client, error) {
	e.t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		return nil, err
	}
	if err := c.Login(login, password).Wait(); err != nil {
		c.Close()
		return nil, err
	}
	e.t.Cleanup(func() { c.Close() })
	return c, nil
}

// mustLogin logs in and selects INBOX.
func (e *env) mustLogin(addr, login, password string) *imapclient.Client {
	e.t.Helper()
	c, err := e.login(addr, login, password)
	if err != nil {
		e.t.Fatalf("login %s: %v", login, err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		e.t.Fatalf("select as %s: %v", login, err)
	}
	return c
}

// alive reports whether a session still answers.
func alive(c *imapclient.Client) bool { return c.Noop().Wait() == nil }

// endsSoon reports whether a session stops answering within 5 s. A reload
// ends sessions by cancelling them, and the relay stops on its own
// goroutine: a NOOP sent at once may still pass while that happens on a
// busy machine.
func endsSoon(c *imapclient.Client) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if !alive(c) {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

var (
	alice  = account{"alice", "pw-a"}
	alice2 = account{"alice", "pw-a2"}
	bob    = account{"bob", "pw-b"}
	carol  = account{"carol", "pw-c"}
)

func TestReloadAccounts(t *testing.T) {
	e := newEnv(t, nil, []account{alice, bob})
	addr := e.d.Addr("imap")
	ca := e.mustLogin(addr, "alice", alice.password)
	cb := e.mustLogin(addr, "bob", bob.password)
	if _, err := e.login(addr, "carol", carol.password); err == nil {
		t.Fatal("carol logged in before she was added")
	}

	// alice's password changes, carol is added.
	e.reload(nil, []account{alice2, bob, carol})
	if e.lastResult() != ReloadSuccess {
		t.Fatalf("OnReload got %q", e.lastResult())
	}
	if !endsSoon(ca) {
		t.Fatal("alice's session survived the change of her password")
	}
	if !alive(cb) {
		t.Fatal("bob's session was cut by a reload that did not touch him")
	}
	if _, err := e.login(addr, "alice", alice.password); err == nil {
		t.Fatal("alice's old password still works")
	}
	e.mustLogin(addr, "alice", alice2.password)
	e.mustLogin(addr, "carol", carol.password)

	// bob is removed.
	e.reload(nil, []account{alice2, carol})
	if !endsSoon(cb) {
		t.Fatal("bob's session survived his removal")
	}
	if _, err := e.login(addr, "bob", bob.password); err == nil {
		t.Fatal("bob logged in after his removal")
	}
	if n := e.d.Sessions().Count("bob"); n != 0 {
		t.Fatalf("%d sessions of bob registered", n)
	}
	logs := e.logs.String()
	for _, want := range []string{"password_hash of the account changed", "account was removed", "configuration reloaded"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

func TestReloadCredentialCacheFollowsHash(t *testing.T) {
	e := newEnv(t, nil, []account{alice})
	auth := func(pw string) error {
		_, err := e.d.creds.Authenticate(context.Background(), "alice", pw, netip.MustParseAddr("127.0.0.1"))
		return err
	}
	for range 2 { // the second is a cache hit
		if err := auth(alice.password); err != nil {
			t.Fatal(err)
		}
	}
	e.reload(nil, []account{alice2})
	if err := auth(alice.password); !errors.Is(err, proxy.ErrBadCredentials) {
		t.Fatalf("cached old password after the change: %v, want ErrBadCredentials", err)
	}
	if err := auth(alice2.password); err != nil {
		t.Fatal(err)
	}
}

func TestReloadInvalidKeepsConfiguration(t *testing.T) {
	e := newEnv(t, nil, []account{alice})
	before := e.d.Config()
	bad := "providers:\n  test: {type: microsoft, client_id: 3f2a5d1c-8b7e-4c2a-9e61-0d4b7a9c5e21}\naccounts:\n  - {login: x, colour: blue}\n"
	if err := os.WriteFile(e.path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	var problems config.Problems
	if err := e.d.ReloadFile(e.path); !errors.As(err, &problems) {
		t.Fatalf("ReloadFile = %v, want Problems", err)
	}
	if e.d.Config() != before {
		t.Fatal("a bad file replaced the configuration")
	}
	if e.lastResult() != ReloadFailure {
		t.Fatalf("OnReload got %q, want failure", e.lastResult())
	}
	logs := e.logs.String()
	for _, p := range problems {
		if p.Line > 0 && !strings.Contains(logs, fmt.Sprintf("line=%d", p.Line)) {
			t.Errorf("problem %q not logged with its line", p)
		}
	}
	if n := strings.Count(logs, "level=ERROR msg=\"configuration problem\""); n != len(problems) {
		t.Errorf("%d problems logged at ERROR, want %d", n, len(problems))
	}
	e.mustLogin(e.d.Addr("imap"), "alice", alice.password)
}

func TestReloadListeners(t *testing.T) {
	e := newEnv(t, nil, []account{alice})
	a, b, c := testkit.FreeAddr(t), testkit.FreeAddr(t), testkit.FreeAddr(t)
	e.reload([]string{e.imapServer(a, "")}, []account{alice}) // from port 0 to a fixed address
	if got := e.listenAddrs(); len(got) != 1 || got[0] != a {
		t.Fatalf("listeners %v, want [%s]", got, a)
	}
	ca := e.mustLogin(a, "alice", alice.password)

	// A second listener is started.
	e.reload([]string{e.imapServer(a, ""), e.imapServer(b, "")}, []account{alice})
	if got := e.listenAddrs(); len(got) != 2 || got[0] != a || got[1] != b {
		t.Fatalf("listeners %v, want [%s %s]", got, a, b)
	}
	cb := e.mustLogin(b, "alice", alice.password)

	// The first one moves: it stops accepting, its session goes on; the
	// second is untouched.
	e.reload([]string{e.imapServer(c, ""), e.imapServer(b, "")}, []account{alice})
	if got := e.listenAddrs(); len(got) != 2 || got[0] != c || got[1] != b {
		t.Fatalf("listeners %v, want [%s %s]", got, c, b)
	}
	if !alive(ca) || !alive(cb) {
		t.Fatal("a session was cut by a listener change")
	}
	if conn, err := net.Dial("tcp", a); err == nil {
		conn.Close()
		t.Fatalf("the old address %s still accepts", a)
	}
	e.mustLogin(c, "alice", alice.password)

	// A listener that cannot be opened leaves the listeners as they are.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	e.reload([]string{e.imapServer(busy.Addr().String(), "")}, []account{alice})
	if got := e.listenAddrs(); len(got) != 2 || got[0] != c || got[1] != b {
		t.Fatalf("listeners %v after a failed start, want them unchanged", got)
	}
	if !strings.Contains(e.logs.String(), "listeners unchanged") {
		t.Error("the failed listener start was not logged")
	}
	if !alive(ca) || !alive(cb) {
		t.Fatal("a session was cut by a failed listener change")
	}

	// The retired listener's session still ends with Shutdown.
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cancel()
	_ = e.d.Shutdown(sctx)
	if alive(ca) {
		t.Fatal("Shutdown left the retired listener's session open")
	}
}

func TestReloadWarnsWhatNeedsRestart(t *testing.T) {
	e := newEnv(t, nil, []account{alice})
	e.reload([]string{e.imapServer("127.0.0.1:0", ", idle_timeout: 40m, max_connections: 5")}, []account{alice})
	logs := e.logs.String()
	if !strings.Contains(logs, "servers[0] max_connections, idle_timeout changed: restart xoauthd to apply it") {
		t.Fatalf("no restart warning in:\n%s", logs)
	}
	if len(e.listenAddrs()) != 1 {
		t.Fatal("a settings change restarted the listener")
	}
}

func TestReloadUpstreamLive(t *testing.T) {
	e := newEnv(t, nil, []account{alice})
	addr := e.d.Addr("imap")
	other := memupstream.MustStart(t, memupstream.Options{})
	other.AddUser("alice@contoso.test")
	if err := other.Append("alice@contoso.test", "INBOX", []byte("Subject: hi\r\n\r\nhello\r\n")); err != nil {
		t.Fatal(err)
	}
	server := fmt.Sprintf(`{protocol: imap, listen: "127.0.0.1:0", upstream: "%s", ca_file: "%s"}`, other.Addr(), other.CAFile())
	e.reload([]string{server}, []account{alice})
	if e.d.Addr("imap") != addr {
		t.Fatal("an upstream change restarted the listener")
	}
	c := e.mustLogin(addr, "alice", alice.password)
	mbox, err := c.Select("INBOX", nil).Wait()
	if err != nil || mbox.NumMessages != 1 {
		t.Fatalf("INBOX after the upstream change: %v, %v; want the other upstream's message", mbox, err)
	}
}

func TestWatchReloads(t *testing.T) {
	e := newEnv(t, nil, []account{alice})
	w, err := e.d.Watch(context.Background(), e.path, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	e.write(nil, []account{alice, carol})
	addr := e.d.Addr("imap")
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := e.login(addr, "carol", carol.password)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("carol cannot log in after the file changed: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWarnRestartNeeded(t *testing.T) {
	base := `providers:
  test: {type: microsoft, client_id: 3f2a5d1c-8b7e-4c2a-9e61-0d4b7a9c5e21}
servers:
  - {protocol: imap, listen: "127.0.0.1:1143"%s}
accounts:
  - {login: alice, password_hash: "` + fakeHash("x") + `", identity: alice@contoso.test}
%s`
	path := filepath.Join(t.TempDir(), "xoauthd.yaml")
	parse := func(server, tail string) *config.Config {
		t.Helper()
		cfg, err := config.Parse([]byte(fmt.Sprintf(base, server, tail)), path)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	tests := []struct {
		name         string
		server, tail string
		want         string // "" : no warning
	}{
		{"unchanged", "", "", ""},
		{"upstream is live", `, upstream: "imap.example.com:993"`, "", ""},
		{"idle timeout", ", idle_timeout: 40m", "", "servers[0] idle_timeout changed: restart xoauthd to apply it"},
		{"connection limit", ", max_connections: 3", "", "servers[0] max_connections changed"},
		{"admin", "", "admin: {listen: 127.0.0.1:9925}\n", "admin changed"},
		{"log", "", "log: {level: debug}\n", "log changed"},
		{"store", "", "store: {path: /var/lib/xoauthd/other.json}\n", "store changed"},
	}
	prev := parse("", "")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &testkit.SyncBuffer{}
			d := &Daemon{log: slog.New(slog.NewTextHandler(logs, nil))}
			d.warnRestartNeeded(prev, parse(tt.server, tt.tail))
			got := logs.String()
			if tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
				t.Fatalf("logged %q, want %q", got, tt.want)
			}
		})
	}
}
