package daemon

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/memupstream"
	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/proxy"
)

// opsTimeout bounds every network step of these tests.
const opsTimeout = 10 * time.Second

// opsTokens hands out one fixed token per identity.
type opsTokens struct{}

func (opsTokens) Token(_ context.Context, identity string) (string, error) {
	return "tok-" + identity, nil
}

func (opsTokens) Refresh(_ context.Context, identity, _ string) (string, error) {
	return "tok-" + identity, nil
}

// opsHash is a well-formed argon2id PHC string standing for password; the
// tests' Verify compares against it instead of running argon2id.
func opsHash(password string) string {
	sum := sha256.Sum256([]byte("ops " + password))
	enc := base64.RawStdEncoding
	return "$argon2id$v=19$m=24576,t=2,p=1$" + enc.EncodeToString(sum[:16]) + "$" + enc.EncodeToString(sum[:])
}

func opsVerify(phc, password string) (bool, error) { return phc == opsHash(password), nil }

// opsAccount is one account of an opsRig: local login and password, and the
// identity (also the mailbox).
type opsAccount struct{ login, password, identity, hash string }

// opsRigOptions shape an opsRig.
type opsRigOptions struct {
	tokens   proxy.TokenSource // nil: the token manager over the store
	creds    proxy.CredentialOptions
	provider string // the provider's YAML mapping; default a Microsoft one without secret
	log      string // the log section's YAML; default {level: debug}
	accounts []opsAccount
	validate func(user, token string) error // the upstream's token check; nil: any token
	console  string                         // admin.password_hash; "": the console is off
}

// opsRig is a daemon with its admin endpoint in front of an in-memory IMAP
// and POP3 upstream.
type opsRig struct {
	t         *testing.T
	dir       string
	mem       *memupstream.Server
	d         *Daemon
	logs      *testkit.SyncBuffer
	imap, pop string // the daemon's listen addresses
	admin     string // base URL of the admin endpoint
	cancel    context.CancelFunc
	stopped   bool
}

// newOpsRig builds and starts the daemon (the upstream is already running).
func newOpsRig(t *testing.T, o opsRigOptions) *opsRig {
	t.Helper()
	r := &opsRig{t: t, dir: t.TempDir(), logs: &testkit.SyncBuffer{}}
	r.mem = memupstream.MustStart(t, memupstream.Options{Validate: o.validate})
	pop, err := r.mem.StartPOP3(memupstream.POP3Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pop.Close() })
	for _, a := range o.accounts {
		r.mem.AddUser(a.identity)
	}
	r.start(r.yaml(o, pop.Addr()), Options{Tokens: o.tokens, Credentials: o.creds})
	r.imap, r.pop = r.d.Addr(config.ProtoIMAP), r.d.Addr(config.ProtoPOP3)
	return r
}

// start writes conf as the configuration file, builds the daemon with opts
// (its log goes to r.logs, a recovered panic fails the test) and starts it,
// with the admin endpoint's URL in r.admin; the test's end stops it.
func (r *opsRig) start(conf string, opts Options) {
	t := r.t
	t.Helper()
	path := filepath.Join(r.dir, "xoauthd.yaml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("loading the test configuration: %v", err)
	}
	opts.Log = slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.OnPanic = func(v any) { t.Errorf("recovered panic: %v", v) }
	if r.d, err = New(cfg, opts); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	if err := r.d.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	r.admin = "http://" + r.d.AdminAddr()
	t.Cleanup(func() {
		r.stop()
		if t.Failed() {
			t.Logf("xoauthd log:\n%s", r.logs.String())
		}
	})
}

func (r *opsRig) yaml(o opsRigOptions, popAddr string) string {
	provider := o.provider
	if provider == "" {
		provider = "{type: microsoft, client_id: 3f2a5d1c-8b7e-4c2a-9e61-0d4b7a9c5e21}"
	}
	logConf := o.log
	if logConf == "" {
		logConf = "{level: debug}"
	}
	var b strings.Builder
	admin := `{listen: "127.0.0.1:0"}`
	if o.console != "" {
		admin = fmt.Sprintf(`{listen: "127.0.0.1:0", password_hash: %q}`, o.console)
	}
	fmt.Fprintf(&b, "log: %s\nadmin: %s\n", logConf, admin)
	fmt.Fprintf(&b, "store:\n  path: %[1]s/tokens.json\n  key: ${file:%[1]s/store.key}\n", r.dir)
	fmt.Fprintf(&b, "providers:\n  test: %s\n", provider)
	fmt.Fprintf(&b, "servers:\n  - {protocol: imap, listen: \"127.0.0.1:0\", upstream: \"%s\", ca_file: \"%s\"}\n", r.mem.Addr(), r.mem.CAFile())
	fmt.Fprintf(&b, "  - {protocol: pop3, listen: \"127.0.0.1:0\", upstream: \"%s\", ca_file: \"%s\"}\n", popAddr, r.mem.CAFile())
	b.WriteString("accounts:\n")
	for _, a := range o.accounts {
		hash := a.hash
		if hash == "" {
			hash = opsHash(a.password)
		}
		fmt.Fprintf(&b, "  - {login: %s, password_hash: \"%s\", identity: %s, provider: test}\n", a.login, hash, a.identity)
	}
	return b.String()
}

// stop shuts the daemon down once.
func (r *opsRig) stop() {
	if r.stopped {
		return
	}
	r.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), opsTimeout)
	defer cancel()
	if err := r.d.Shutdown(ctx); err != nil {
		r.t.Errorf("shutdown: %v", err)
	}
	r.cancel()
}

// get fetches an admin path and returns the status and body.
func (r *opsRig) get(path string) (int, string) {
	r.t.Helper()
	client := &http.Client{Timeout: opsTimeout}
	resp, err := client.Get(r.admin + path)
	if err != nil {
		r.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		r.t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// metric returns the value of the series in the /metrics text, whose line
// starts with series (name{labels} as Prometheus writes it), or -1.
func (r *opsRig) metric(series string) float64 {
	r.t.Helper()
	_, body := r.get("/metrics")
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				r.t.Fatalf("metric line %q: %v", line, err)
			}
			return f
		}
	}
	return -1
}

// wire is a line-oriented client of one mail connection.
type wire struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialWire(t *testing.T, addr string) *wire {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, opsTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(3 * opsTimeout))
	w := &wire{t: t, c: c, br: bufio.NewReader(c)}
	w.line() // greeting
	return w
}

func (w *wire) send(line string) {
	w.t.Helper()
	if _, err := io.WriteString(w.c, line+"\r\n"); err != nil {
		w.t.Fatalf("sending %q: %v", line, err)
	}
}

func (w *wire) line() string {
	w.t.Helper()
	l, err := w.br.ReadString('\n')
	if err != nil {
		w.t.Fatalf("reading: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// until reads lines until one starts with prefix and returns it.
func (w *wire) until(prefix string) string {
	w.t.Helper()
	for {
		if l := w.line(); strings.HasPrefix(l, prefix) {
			return l
		}
	}
}

// cmd sends line and reads until a line starting with prefix.
func (w *wire) cmd(line, prefix string) string {
	w.t.Helper()
	w.send(line)
	return w.until(prefix)
}

// closeAndDrain half-closes the client's side, reads what is left until
// the server closes too, and closes.
func (w *wire) closeAndDrain() {
	if tc, ok := w.c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, w.br)
	w.c.Close()
}

var opsAlice = opsAccount{login: "erp-alice", password: "alice local pw", identity: "alice@contoso.test"}

func TestHealthzAndReadyzWithoutStore(t *testing.T) {
	r := newOpsRig(t, opsRigOptions{tokens: opsTokens{}, accounts: []opsAccount{opsAlice}})
	if code, body := r.get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	// With a token source of its own the daemon has no store to check.
	if code, body := r.get("/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("/readyz = %d %q", code, body)
	}
	// A listener whose socket closed (its accept loop failed) makes the
	// process unready; the reason names it.
	r.d.mu.Lock()
	for _, l := range r.d.listeners {
		if l.conf.Protocol == config.ProtoPOP3 {
			l.ln.Close()
		}
	}
	r.d.mu.Unlock()
	code, body := r.get("/readyz")
	if code != http.StatusServiceUnavailable || !regexp.MustCompile(`(?m)^the pop3 listener on 127\.0\.0\.1:0 is not accepting connections`).MatchString(body) {
		t.Errorf("/readyz with a closed listener = %d %q", code, body)
	}
	// During shutdown the process says so.
	r.stop()
	if rd := r.d.readiness(context.Background()); len(rd.Problems) != 1 || !strings.HasPrefix(rd.Problems[0], "shutting down") {
		t.Errorf("readiness after Shutdown = %+v", rd)
	}
	if r.d.AdminAddr() != "" {
		t.Error("the admin endpoint still runs after Shutdown")
	}
}

func TestReadyzBeforeStart(t *testing.T) {
	dir := t.TempDir()
	conf := fmt.Sprintf(`store: {path: %[1]s/tokens.json, key: "${file:%[1]s/store.key}"}
providers:
  test: {type: microsoft, client_id: 3f2a5d1c-8b7e-4c2a-9e61-0d4b7a9c5e21}
servers:
  - {protocol: imap, listen: "127.0.0.1:0", upstream: "127.0.0.1:1"}
accounts:
  - {login: erp, password_hash: "%[2]s", identity: a@contoso.test, provider: test}
`, dir, opsHash("x"))
	cfg, err := config.Parse([]byte(conf), filepath.Join(dir, "xoauthd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(cfg, Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	rd := d.readiness(context.Background())
	if len(rd.Problems) != 1 || !strings.HasPrefix(rd.Problems[0], "starting") {
		t.Errorf("readiness before Start = %+v", rd)
	}
	if len(rd.Notes) != 1 || rd.Notes[0] != "identity a@contoso.test is not logged in: run xoauthd login a@contoso.test" {
		t.Errorf("notes = %q", rd.Notes)
	}
	if d.AdminAddr() != "" {
		t.Error("admin address without admin.listen")
	}
}

// TestReadyzFlipsWithTheStore logs an identity in, then damages, restores,
// revokes and removes the token store under a running daemon.
func TestReadyzFlipsWithTheStore(t *testing.T) {
	idp := newOpsIdP(t, 0)
	r := newOpsRig(t, opsRigOptions{accounts: []opsAccount{opsAlice}, provider: idp.providerYAML("")})
	store := filepath.Join(r.dir, "tokens.json")
	const (
		series  = `xoauthd_identity_needs_login{identity="alice@contoso.test"}`
		expiry  = `xoauthd_token_expiry_timestamp_seconds{identity="alice@contoso.test"}`
		notYet  = "ready\nnote: identity alice@contoso.test is not logged in: run xoauthd login alice@contoso.test\n"
		revoked = "ready\nnote: identity alice@contoso.test needs a new login ("
	)
	check := func(step string, code int, body string, needs float64) {
		t.Helper()
		gotCode, gotBody := r.get("/readyz")
		if gotCode != code || !strings.Contains(gotBody, body) {
			t.Errorf("%s: /readyz = %d %q, want %d with %q", step, gotCode, gotBody, code, body)
		}
		if got := r.metric(series); got != needs {
			t.Errorf("%s: %s = %v, want %v", step, series, got, needs)
		}
	}

	check("first run, nothing stored", 200, notYet, 1)
	if got := r.metric(expiry); got != -1 {
		t.Errorf("expiry before any login = %v", got)
	}

	idp.login(t, r, opsAlice.identity)
	check("logged in", 200, "ready\n", 0)
	if _, body := r.get("/readyz"); strings.Contains(body, "note:") {
		t.Errorf("a logged-in identity has a note: %q", body)
	}
	if got := r.metric(expiry); got < float64(time.Now().Unix()) {
		t.Errorf("expiry after login = %v, want a time in the future", got)
	}
	good, err := os.ReadFile(store)
	if err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(store, []byte("this is not a token store"), 0o600); err != nil {
		t.Fatal(err)
	}
	check("damaged", 503, "reading the token store: token store "+store, -1)

	if err := os.WriteFile(store+".tmp", good, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(store+".tmp", store); err != nil {
		t.Fatal(err)
	}
	check("restored", 200, "ready\n", 0)

	// The identity provider revokes alice's refresh token: the next
	// refresh fails, and alice needs a person; the process stays ready.
	idp.idp.RevokeUser(opsAlice.identity)
	ctx, cancel := context.WithTimeout(context.Background(), opsTimeout)
	defer cancel()
	tok, err := r.d.Tokens().Token(ctx, opsAlice.identity)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.d.Tokens().Refresh(ctx, opsAlice.identity, tok); err == nil {
		t.Fatal("refreshing a revoked identity succeeded")
	}
	check("revoked", 200, revoked, 1)
	if got := r.metric(`xoauthd_token_refreshes_total{identity="alice@contoso.test",result="needs_login"}`); got != 1 {
		t.Errorf("needs_login refreshes = %v, want 1", got)
	}

	if err := os.Remove(store); err != nil {
		t.Fatal(err)
	}
	check("disappeared", 503, "token store "+store+" has disappeared", -1)

	if err := os.Mkdir(store, 0o700); err != nil {
		t.Fatal(err)
	}
	check("a directory in its place", 503, "reading the token store", -1)

	if os.Geteuid() != 0 { // root reads whatever the mode says
		if err := os.Remove(store); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(store, good, 0); err != nil {
			t.Fatal(err)
		}
		check("unreadable", 503, "cannot be read", -1)
	}
}

func TestMetricsMoveWithLogins(t *testing.T) {
	bob := opsAccount{login: "erp-bob", password: "bob local pw", identity: "bob@contoso.test"}
	r := newOpsRig(t, opsRigOptions{
		tokens:   opsTokens{},
		accounts: []opsAccount{opsAlice, bob},
		creds:    proxy.CredentialOptions{Verify: opsVerify, BaseDelay: -1, AddrLimit: 2, LoginLimit: -1, CacheTTL: -1},
	})
	if err := r.mem.Append(opsAlice.identity, "INBOX", []byte("Subject: hi\r\n\r\nhello\r\n")); err != nil {
		t.Fatal(err)
	}
	series := func(name, labels string) float64 { return r.metric(name + "{" + labels + "}") }
	if v := series("xoauthd_logins_total", `protocol="imap",result="success"`); v != 0 {
		t.Fatalf("logins before any = %v", v)
	}

	// IMAP: a login, a command, a logout.
	w := dialWire(t, r.imap)
	w.cmd("a LOGIN erp-alice \"alice local pw\"", "a OK")
	w.cmd("b SELECT INBOX", "b OK")
	w.cmd("c FETCH 1 BODY[]", "c OK")
	w.cmd("d LOGOUT", "d OK")
	w.closeAndDrain()
	// POP3: a login and a message.
	p := dialWire(t, r.pop)
	p.cmd("USER erp-bob", "+OK")
	p.cmd("PASS bob local pw", "+OK")
	p.cmd("STAT", "+OK")
	p.cmd("QUIT", "+OK")
	p.closeAndDrain()
	// Two bad passwords, then a good one that the throttle refuses.
	f := dialWire(t, r.imap)
	f.cmd("a LOGIN erp-alice wrong1", "a NO")
	f.cmd("b LOGIN erp-alice wrong2", "b NO")
	f.closeAndDrain()
	g := dialWire(t, r.imap)
	g.cmd("a LOGIN erp-alice \"alice local pw\"", "a NO [UNAVAILABLE]")
	g.closeAndDrain()
	// Shutdown waits for every session to end and be counted.
	code, metricsText := r.get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	_ = metricsText
	r.d.mu.Lock()
	ls := append([]*listener(nil), r.d.listeners...)
	r.d.mu.Unlock()
	for _, l := range ls {
		ctx, cancel := context.WithTimeout(context.Background(), opsTimeout)
		_ = l.srv.Shutdown(ctx) // sessions ended: returns at once
		cancel()
	}

	want := []struct {
		name, labels string
		want         float64
	}{
		{"xoauthd_logins_total", `protocol="imap",result="success"`, 1},
		{"xoauthd_logins_total", `protocol="imap",result="failure"`, 3},
		{"xoauthd_logins_total", `protocol="pop3",result="success"`, 1},
		{"xoauthd_logins_throttled_total", `protocol="imap"`, 1},
		{"xoauthd_connections_total", `protocol="imap"`, 3},
		{"xoauthd_connections_total", `protocol="pop3"`, 1},
		{"xoauthd_connections_open", `protocol="imap"`, 0},
		{"xoauthd_upstream_dial_duration_seconds_count", `protocol="imap"`, 1},
		{"xoauthd_upstream_auth_duration_seconds_count", `protocol="imap"`, 1},
		{"xoauthd_upstream_auth_duration_seconds_count", `protocol="pop3"`, 1},
	}
	for _, m := range want {
		if got := series(m.name, m.labels); got != m.want {
			t.Errorf("%s{%s} = %v, want %v", m.name, m.labels, got, m.want)
		}
	}
	for _, s := range []string{
		`xoauthd_relayed_bytes_total{direction="client_to_upstream",protocol="imap"}`,
		`xoauthd_relayed_bytes_total{direction="upstream_to_client",protocol="imap"}`,
		`xoauthd_relayed_bytes_total{direction="upstream_to_client",protocol="pop3"}`,
	} {
		if got := r.metric(s); got <= 0 {
			t.Errorf("%s = %v, want bytes", s, got)
		}
	}
}
