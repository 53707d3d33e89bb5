package console

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/passhash"
	"github.com/xoauthd/xoauthd/internal/testidp"
	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/internal/testupstream"
	"github.com/xoauthd/xoauthd/proxy"
	"github.com/xoauthd/xoauthd/tokens"
)

// Test accounts and the app registrations.
const (
	alice       = "alice@contoso.test"
	aliceLogin  = "erp-alice"
	bob         = "bob@contoso.test"
	appMailbox  = "scanner@contoso.test"
	appLogin    = "scanner"
	clientID    = "4c1e7a52-6d0b-4f3a-8e21-9b7c5d3e1f02"
	appClientID = "8a2f4c61-1e3d-4b7a-9c05-6f8e2d1a3b47"
	appSecret   = "app-s3cret-value"
	consolePass = "console pw 7"
	localPass   = "local pw 1"
)

// rig is a console over a live configuration, a token store and a test
// identity provider behind a recording proxy (it keeps every token it
// hands out, for the secrets test). Dovecot is started only on request.
type rig struct {
	t      *testing.T
	dir    string
	idp    *testidp.IdP
	rec    *testidp.Recorder // the configuration's authority: keeps the tokens it issues
	idpURL string            // rec.URL
	dc     *testupstream.Dovecot
	cfg    atomic.Pointer[config.Config]
	store  *tokens.Store
	c      *Console
	srv    *httptest.Server
	base   string // http://localhost:PORT, the console's address
	logs   *testkit.SyncBuffer
	hash   string // the console password's hash
	// liveFetches counts the requests for a live part (the script's).
	liveFetches atomic.Int64
	// localHash is the accounts' password hash, made once.
	localHash string
}

type rigOptions struct {
	dovecot bool
	creds   proxy.CredentialOptions
	noHash  bool // the console is off
	manager bool // Test uses one token manager, as in the daemon
	noStore bool // the console has no token store (a daemon whose tokens come from elsewhere)
}

func newRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	r := &rig{t: t, dir: t.TempDir(), logs: &testkit.SyncBuffer{}}
	idp, err := testidp.Start(testidp.Options{DeviceInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	r.idp = idp
	idp.AddClient(testidp.Client{ID: clientID, Public: true})
	idp.AddClient(testidp.Client{ID: appClientID, Secret: appSecret})
	idp.AddUser(alice)
	idp.AddUser(bob)
	r.rec = testidp.NewRecorder(t, idp)
	r.idpURL = r.rec.URL
	if o.dovecot {
		r.dc = testupstream.New(t, testupstream.Options{JWTKey: idp.SigningKey()})
	}
	if !o.noHash {
		if r.hash, err = passhash.Hash(consolePass); err != nil {
			t.Fatal(err)
		}
	}
	r.setConfig(r.yaml(true))
	key, _, err := tokens.LoadKey(r.config().Store)
	if err != nil {
		t.Fatal(err)
	}
	if r.store, err = tokens.OpenStore(r.config().Store.Path, key); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if o.creds.BaseDelay == 0 {
		o.creds.BaseDelay = -1 // no delays in tests; the limits still apply
	}
	opts := Options{Config: r.config, Store: r.store, Log: log, Credentials: o.creds,
		Events: NewEvents(func(l string) bool { return r.config().Account(l) != nil })}
	if o.noStore {
		opts.Store = nil
	}
	if o.manager {
		opts.Tokens = tokens.NewManager(r.store, r.providerOf, tokens.Options{})
	}
	r.c = New(opts)
	t.Cleanup(r.c.Close)
	h := r.c.Handler()
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Query().Get("part") == "live" {
			r.liveFetches.Add(1)
		}
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	_, port, _ := net.SplitHostPort(r.srv.Listener.Addr().String())
	r.base = "http://localhost:" + port
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("console log:\n%s", r.logs)
		}
	})
	return r
}

// providerOf is the provider of identity's account in the configuration
// in force, as the daemon's token manager finds it.
func (r *rig) providerOf(identity string) (*config.Provider, error) {
	cfg := r.config()
	for _, a := range cfg.Accounts {
		if strings.EqualFold(a.Identity, identity) {
			return cfg.Providers[a.Provider], nil
		}
	}
	return nil, fmt.Errorf("no account has identity %s", identity)
}

func (r *rig) config() *config.Config { return r.cfg.Load() }

// yaml is the test configuration; withAlice false leaves erp-alice out
// (a reload that removes it).
func (r *rig) yaml(withAlice bool) string {
	if r.localHash == "" {
		var err error
		if r.localHash, err = passhash.Hash(localPass); err != nil {
			r.t.Fatal(err)
		}
	}
	h := r.localHash
	imapUp, pop3Up, smtpUp, ca := "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", ""
	if r.dc != nil {
		imapUp, pop3Up, smtpUp, ca = r.dc.IMAPAddr, r.dc.POP3Addr, r.dc.SubmissionAddr, r.dc.CAFile
	}
	var b strings.Builder
	fmt.Fprintf(&b, `admin: {listen: "127.0.0.1:9925", password_hash: %q}
store:
  path: %[2]s/tokens.json
  key: ${file:%[2]s/store.key}
providers:
  test: {type: microsoft, tenant: %[3]s, client_id: %[4]s, flow: authcode, authority: %[5]q}
  app: {type: microsoft, tenant: %[3]s, client_id: %[6]s, client_secret: %[7]q, flow: client_credentials, authority: %[5]q}
servers:
  - {protocol: imap, listen: "127.0.0.1:11143", upstream: %[8]q, ca_file: %[11]q}
  - {protocol: pop3, listen: "127.0.0.1:11110", upstream: %[9]q, ca_file: %[11]q}
  - {protocol: smtp, listen: "127.0.0.1:11587", upstream: %[10]q, upstream_tls: starttls, ca_file: %[11]q}
accounts:
`, r.hash, r.dir, r.idp.Tenant(), clientID, r.idpURL, appClientID, appSecret, imapUp, pop3Up, smtpUp, ca)
	if withAlice {
		fmt.Fprintf(&b, "  - {login: %s, password_hash: %q, identity: %s, provider: test}\n", aliceLogin, h, alice)
	}
	fmt.Fprintf(&b, "  - {login: erp-bob, password_hash: %q, identity: %s, provider: test}\n", h, bob)
	fmt.Fprintf(&b, "  - {login: %s, password_hash: %q, identity: %s, provider: app}\n", appLogin, h, appMailbox)
	return strings.ReplaceAll(b.String(), `password_hash: ""`, "")
}

// setConfig parses src and puts it in force, as a reload does.
func (r *rig) setConfig(src string) {
	r.t.Helper()
	path := filepath.Join(r.dir, "xoauthd.yaml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		r.t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		r.t.Fatalf("test configuration: %v\n%s", err, src)
	}
	r.cfg.Store(cfg)
}

// browser is a cookie-keeping HTTP client that does not follow redirects,
// so tests see each answer; it records everything it saw for the secrets
// test.
type browser struct {
	t      *testing.T
	r      *rig
	client *http.Client
	seen   *bytes.Buffer // every URL, header and body
}

func (r *rig) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: r.t, r: r, seen: &bytes.Buffer{}, client: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// answer is one response.
type answer struct {
	code     int
	body     string
	header   http.Header
	location string
}

func (b *browser) do(req *http.Request) answer {
	b.t.Helper()
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	dump, _ := httputil.DumpResponse(resp, false)
	fmt.Fprintf(b.seen, "%s %s\n%s\n%s\n", req.Method, req.URL, dump, body)
	return answer{code: resp.StatusCode, body: string(body), header: resp.Header, location: resp.Header.Get("Location")}
}

func (b *browser) get(path string) answer {
	b.t.Helper()
	u := path
	if strings.HasPrefix(path, "/") {
		u = b.r.base + path
	}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

func (b *browser) post(path string, form url.Values) answer {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.r.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf returns the form token of a page.
func csrf(t *testing.T, body string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no csrf field in:\n%s", body)
	}
	return m[1]
}

// signIn signs the browser in and returns the session's CSRF token.
func (b *browser) signIn() string {
	b.t.Helper()
	page := b.get("/signin")
	a := b.post("/signin", url.Values{"csrf": {csrf(b.t, page.body)}, "password": {consolePass}})
	if a.code != http.StatusSeeOther || a.location != "/" {
		b.t.Fatalf("sign-in: %d %s\n%s", a.code, a.location, a.body)
	}
	home := b.get("/")
	if home.code != http.StatusOK {
		b.t.Fatalf("accounts page after sign-in: %d\n%s", home.code, home.body)
	}
	return csrf(b.t, home.body)
}

// connect presses Connect for identity and returns the identity provider's
// sign-in address.
func (b *browser) connect(token, identity string) string {
	b.t.Helper()
	a := b.post("/identity/connect", url.Values{"csrf": {token}, "identity": {identity}, "provider": {"test"}})
	if a.code != http.StatusSeeOther || !strings.HasPrefix(a.location, b.r.idpURL) {
		b.t.Fatalf("connect: %d %q\n%s", a.code, a.location, a.body)
	}
	return a.location
}

// comeBack plays the identity provider's redirect: a cross-site navigation
// that carries no SameSite=Strict cookie, so a client without the jar.
func (b *browser) comeBack(redirect string) answer {
	b.t.Helper()
	fresh := &browser{t: b.t, r: b.r, seen: b.seen, client: &http.Client{Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	return fresh.get(redirect)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}
