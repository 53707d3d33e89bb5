package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/notify"
	"github.com/xoauthd/xoauthd/internal/testidp"
	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/internal/testsignin"
	"github.com/xoauthd/xoauthd/tokens"
)

// Fixtures of the keep-alive and alert tests.
const (
	kaClientID = "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
	kaSecret   = "ka-client-secret-value"
	kaAlice    = "alice@contoso.onmicrosoft.com"
	kaApp      = "robot@contoso.onmicrosoft.com" // served with client credentials
	// kaHash is a well-formed argon2id hash (of "change-me").
	kaHash = "$argon2id$v=19$m=24576,t=2,p=1$CN+OY1B3VPKH6MoQedCaXg$wBVH52bUhlkgkOKHTHXGXk9L3zCoWdWBBag7EGay/t8"
	kaWait = 10 * time.Second
)

// kaRig is a daemon (not started unless a test does) over a token store,
// a test identity provider behind a proxy that keeps every token it hands
// out, and a webhook that records what it receives.
type kaRig struct {
	d      *Daemon
	cfg    *config.Config
	idp    *testidp.IdP
	rec    *testidp.Recorder // the configuration's authority: keeps the tokens
	idpURL string            // rec.URL
	log    *testkit.SyncBuffer
	hooked chan []byte // webhook bodies
}

func newKaRig(t *testing.T, extraYAML string) *kaRig {
	t.Helper()
	r := &kaRig{idp: testidp.New(t, testidp.Options{}), log: &testkit.SyncBuffer{}, hooked: make(chan []byte, 10)}
	r.idp.AddClient(testidp.Client{ID: kaClientID, Secret: kaSecret})
	r.idp.AddUser(kaAlice)
	r.rec = testidp.NewRecorder(t, r.idp)
	r.idpURL = r.rec.URL
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
		r.hooked <- body
	}))
	t.Cleanup(hook.Close)

	dir := t.TempDir()
	provider := fmt.Sprintf("{type: microsoft, tenant: %s, client_id: %s, client_secret: %s, authority: %q",
		r.idp.Tenant(), kaClientID, kaSecret, r.idpURL)
	yaml := fmt.Sprintf(`store: {path: tokens.json}
providers:
  m365: %s}
  app: %s, flow: client_credentials}
servers:
  - {protocol: imap, listen: "127.0.0.1:0", upstream: "127.0.0.1:1"}
accounts:
  - {login: alice, password_hash: "%s", identity: %s, provider: m365}
  - {login: alice2, password_hash: "%s", identity: %s, provider: m365}
  - {login: robot, password_hash: "%s", identity: %s, provider: app}
notify: {webhook: "%s/hook/secret-path", timeout: 5s}
%s`, provider, provider, kaHash, kaAlice, kaHash, strings.ToUpper(kaAlice), kaHash, kaApp, hook.URL, extraYAML)
	path := filepath.Join(dir, "xoauthd.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	if r.cfg, err = config.Load(path); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r.d, err = New(r.cfg, Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), kaWait)
		defer cancel()
		r.d.Shutdown(ctx)
	})
	return r
}

// login signs alice in as `xoauthd login` would, with a store of its own
// over the daemon's file.
func (r *kaRig) login(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), kaWait)
	defer cancel()
	if err := testsignin.SignIn(ctx, r.cfg, "m365", kaAlice, r.rec.Authorize); err != nil {
		t.Fatal(err)
	}
}

// webhook waits for the next webhook body.
func (r *kaRig) webhook(t *testing.T) map[string]string {
	t.Helper()
	select {
	case body := <-r.hooked:
		var m map[string]string
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("webhook body %q: %v", body, err)
		}
		return m
	case <-time.After(kaWait):
		t.Fatalf("no webhook call; log:\n%s", r.log)
	}
	return nil
}

// noSecrets checks that no token the IdP issued and not the client secret
// appear in out.
func (r *kaRig) noSecrets(t *testing.T, what, out string) {
	t.Helper()
	secrets := append([]string{kaSecret}, r.rec.Tokens()...)
	if len(secrets) < 3 {
		t.Fatalf("only %d secrets recorded", len(secrets))
	}
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("%s contains a token or the client secret (%.12s...)", what, s)
		}
	}
}

func (r *kaRig) errorLines() int { return strings.Count(r.log.String(), "level=ERROR") }

// TestNeedsLoginAlertedOnce: a revoked identity is reported once, however
// often logins fail (also while a cached token still works), with the
// exact login command, on the log, the webhook and Alerts; a new login
// closes the alert and a later failure alerts again. No alert holds a
// token or the client secret.
func TestNeedsLoginAlertedOnce(t *testing.T) {
	r := newKaRig(t, "")
	ctx := t.Context()
	r.login(t)
	tok, err := r.d.tokens.Token(ctx, kaAlice)
	if err != nil {
		t.Fatal(err)
	}
	r.idp.RevokeUser(kaAlice)
	for range 10 {
		if _, err := r.d.tokens.Refresh(ctx, kaAlice, tok); !errors.Is(err, tokens.ErrNeedsLogin) {
			t.Fatalf("Refresh after revocation = %v", err)
		}
		// The cached access token still works: that proves nothing.
		if _, err := r.d.tokens.Token(ctx, kaAlice); err != nil {
			t.Fatal(err)
		}
	}
	got := r.webhook(t)
	abs, _ := filepath.Abs(r.cfg.Path)
	wantCmd := "xoauthd login --config " + shellQuote(abs, false) + " " + kaAlice
	if got["identity"] != kaAlice || got["kind"] != notify.KindNeedsLogin || got["code"] != "AADSTS700082" ||
		got["cause"] != "refresh token expired" || !strings.Contains(got["fix"], "xoauthd login "+kaAlice) ||
		got["command"] != wantCmd || got["host"] == "" || got["time"] == "" {
		t.Errorf("webhook got %v", got)
	}
	if n := r.errorLines(); n != 1 {
		t.Errorf("%d ERROR lines, want 1:\n%s", n, r.log)
	}
	alerts := r.d.Alerts()
	if len(alerts) != 1 || alerts[0].Command != wantCmd {
		t.Fatalf("Alerts() = %+v", alerts)
	}
	if line := r.log.String(); !strings.Contains(line, "command=") || !strings.Contains(line, kaAlice) {
		t.Errorf("the ERROR line lacks the command:\n%s", line)
	}
	encoded, _ := json.Marshal(alerts)

	r.login(t)
	if alerts := r.d.Alerts(); len(alerts) != 0 {
		t.Fatalf("alerts after a new login: %+v", alerts)
	}
	tok, err = r.d.tokens.Token(ctx, kaAlice)
	if err != nil {
		t.Fatal(err)
	}
	r.idp.RevokeUser(kaAlice)
	if _, err := r.d.tokens.Refresh(ctx, kaAlice, tok); !errors.Is(err, tokens.ErrNeedsLogin) {
		t.Fatalf("Refresh after the second revocation = %v", err)
	}
	if got := r.webhook(t); got["identity"] != kaAlice {
		t.Errorf("second webhook got %v", got)
	}
	if n := r.errorLines(); n != 2 {
		t.Errorf("%d ERROR lines, want 2", n)
	}
	r.noSecrets(t, "the log", r.log.String())
	r.noSecrets(t, "Alerts()", string(encoded))
	r.noSecrets(t, "the webhook", fmt.Sprint(got))
	if strings.Contains(r.log.String(), "secret-path") {
		t.Error("the log shows the webhook URL")
	}
}

// TestKeepaliveRounds: the keep-alive refreshes, reports a revoked
// identity once and a provider outage not at all, and counts its attempts.
func TestKeepaliveRounds(t *testing.T) {
	r := newKaRig(t, "tokens: {keepalive: 1h}\n")
	var mu sync.Mutex
	var attempts []string
	alerted := make(chan notify.Alert, 10)
	r.d.SetAlertHooks(AlertHooks{
		OnKeepalive: func(identity, result string) {
			mu.Lock()
			defer mu.Unlock()
			attempts = append(attempts, identity+" "+result)
		},
		OnAlert: func(a notify.Alert) { alerted <- a },
	})
	r.login(t)
	round := func() {
		ctx, cancel := context.WithTimeout(context.Background(), kaWait)
		defer cancel()
		r.d.keep.keeper.Round(ctx, time.Nanosecond) // everyone is due
	}
	round()
	r.idp.FailWith(testidp.Failure{Status: http.StatusServiceUnavailable})
	round()
	r.idp.ClearFailure()
	if alerts := r.d.Alerts(); len(alerts) != 0 {
		t.Fatalf("an outage raised %+v", alerts)
	}
	r.idp.RevokeUser(kaAlice)
	// The back-off after the outage holds the next request for a moment.
	deadline := time.Now().Add(kaWait)
	for len(alerted) == 0 && time.Now().Before(deadline) {
		round()
		time.Sleep(100 * time.Millisecond)
	}
	if a := <-alerted; a.Identity != kaAlice || a.Code != "AADSTS700082" {
		t.Errorf("alert %+v", a)
	}
	round() // skipped: the refused token is not sent again, nor reported
	if len(alerted) != 0 || r.errorLines() != 1 {
		t.Errorf("alerted again: %d more, %d ERROR lines", len(alerted), r.errorLines())
	}
	mu.Lock()
	got := slices.Compact(slices.Clone(attempts))
	mu.Unlock()
	want := []string{kaAlice + " refreshed", kaAlice + " temporary", kaAlice + " needs_login"}
	if !slices.Equal(got, want) {
		t.Errorf("keep-alive attempts %v, want %v (repeats folded)", got, want)
	}
	if !strings.Contains(r.log.String(), "keep-alive refresh failed; the stored tokens are kept") {
		t.Errorf("the outage was not logged:\n%s", r.log)
	}
}

// TestConfigurationAlert: a refused client secret is a configuration
// alert without a login command, closed by the next successful refresh.
func TestConfigurationAlert(t *testing.T) {
	r := newKaRig(t, "")
	ctx := t.Context()
	r.login(t)
	tok, err := r.d.tokens.Token(ctx, kaAlice)
	if err != nil {
		t.Fatal(err)
	}
	r.idp.AddClient(testidp.Client{ID: kaClientID, Secret: "rotated-secret"})
	if _, err := r.d.tokens.Refresh(ctx, kaAlice, tok); !errors.Is(err, tokens.ErrConfiguration) {
		t.Fatalf("Refresh with a wrong secret = %v", err)
	}
	got := r.webhook(t)
	if got["kind"] != notify.KindConfiguration || got["code"] != "AADSTS7000215" || got["command"] != "" ||
		!strings.HasPrefix(got["cause"], "provider m365: ") {
		t.Errorf("webhook got %v", got)
	}
	if !strings.Contains(r.log.String(), `msg="identity needs a configuration fix"`) {
		t.Errorf("log:\n%s", r.log)
	}
	r.idp.AddClient(testidp.Client{ID: kaClientID, Secret: kaSecret})
	deadline := time.Now().Add(kaWait)
	for len(r.d.Alerts()) > 0 && time.Now().Before(deadline) {
		r.d.tokens.Refresh(ctx, kaAlice, tok)
		time.Sleep(100 * time.Millisecond)
	}
	if alerts := r.d.Alerts(); len(alerts) != 0 {
		t.Fatalf("alerts after the secret was fixed: %+v", alerts)
	}
	r.noSecrets(t, "the log", r.log.String())
}

// kaTokens is a token source whose answer a test sets.
type kaTokens struct {
	mu  sync.Mutex
	err error
}

func (f *kaTokens) set(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *kaTokens) Token(context.Context, string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return "", f.err
	}
	return "tok", nil
}

func (f *kaTokens) Refresh(ctx context.Context, identity, _ string) (string, error) {
	return f.Token(ctx, identity)
}

// TestAlertsWithoutStore: with a token source that is not the manager, a
// working token closes the alert; errors that need no person raise none.
func TestAlertsWithoutStore(t *testing.T) {
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`store: {key: %s}
providers:
  m365: {type: microsoft, client_id: %s}
servers:
  - {protocol: imap, listen: "127.0.0.1:0"}
accounts:
  - {login: alice, password_hash: "%s", identity: %s}
`, strings.Repeat("ab", 32), kaClientID, kaHash, kaAlice)), filepath.Join(dir, "x y.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	src := &kaTokens{}
	log := &testkit.SyncBuffer{}
	d, err := New(cfg, Options{Tokens: src, Log: slog.New(slog.NewTextHandler(log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown(context.Background())
	if d.keep.keeper != nil {
		t.Error("a keep-alive without the token manager")
	}
	ctx := t.Context()
	revoked := &tokens.NeedsLoginError{Identity: kaAlice, Code: "AADSTS50173", Meaning: "grant revoked", Fix: `run "xoauthd login ` + kaAlice + `"`,
		Err: errors.New("refresh_token=must-not-show")}
	for _, err := range []error{
		&tokens.TemporaryError{Identity: kaAlice, Meaning: "could not reach the identity provider"},
		context.Canceled,
		errors.New("store unreadable"),
	} {
		src.set(err)
		d.tokens.Token(ctx, kaAlice)
	}
	if alerts := d.Alerts(); len(alerts) != 0 {
		t.Fatalf("alerts for errors that need no person: %+v", alerts)
	}
	src.set(revoked)
	for range 10 {
		d.tokens.Token(ctx, kaAlice)
	}
	alerts := d.Alerts()
	if len(alerts) != 1 || !strings.Contains(alerts[0].Command, "--config '") || strings.Contains(fmt.Sprint(alerts), "must-not-show") {
		t.Fatalf("Alerts() = %+v", alerts)
	}
	src.set(nil)
	d.tokens.Refresh(ctx, kaAlice, "old")
	if alerts := d.Alerts(); len(alerts) != 0 {
		t.Fatalf("alerts after a working token: %+v", alerts)
	}
	src.set(revoked)
	d.tokens.Token(ctx, kaAlice)
	if n := strings.Count(log.String(), "level=ERROR"); n != 2 || strings.Contains(log.String(), "must-not-show") {
		t.Errorf("%d ERROR lines, want 2:\n%s", n, log)
	}
}

func TestKeepaliveIdentities(t *testing.T) {
	r := newKaRig(t, "")
	if got := r.d.keepaliveIdentities(); !slices.Equal(got, []string{kaAlice}) {
		t.Errorf("keepaliveIdentities() = %v, want only %s (once; the app needs none)", got, kaAlice)
	}
	if got := r.d.Config().Tokens.KeepaliveInterval(); got != 24*time.Hour {
		t.Errorf("keepalive %v", got)
	}
}

// TestStartStopsKeepalive: Start runs the keep-alive and Shutdown ends it.
func TestStartStopsKeepalive(t *testing.T) {
	r := newKaRig(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := r.d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	r.d.keep.mu.Lock()
	done := r.d.keep.done
	r.d.keep.mu.Unlock()
	if done == nil {
		t.Fatal("Start did not start the keep-alive")
	}
	sctx, scancel := context.WithTimeout(context.Background(), kaWait)
	defer scancel()
	if err := r.d.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	default:
		t.Fatal("the keep-alive runs on after Shutdown")
	}
}

func TestShellQuote(t *testing.T) {
	for _, tc := range []struct {
		in      string
		windows bool
		want    string
	}{
		{"/etc/xoauthd/xoauthd.yaml", false, "/etc/xoauthd/xoauthd.yaml"},
		{"alice@contoso.com", false, "alice@contoso.com"},
		{"/srv/my config/x.yaml", false, "'/srv/my config/x.yaml'"},
		{"/srv/it's/x.yaml", false, `'/srv/it'\''s/x.yaml'`},
		{`C:\ProgramData\xoauthd\xoauthd.yaml`, true, `C:\ProgramData\xoauthd\xoauthd.yaml`},
		{`C:\Program Files\xoauthd\xoauthd.yaml`, true, `"C:\Program Files\xoauthd\xoauthd.yaml"`},
		{`a\b`, false, `'a\b'`},
		{"$HOME/x", false, "'$HOME/x'"},
	} {
		if got := shellQuote(tc.in, tc.windows); got != tc.want {
			t.Errorf("shellQuote(%q, %v) = %s, want %s", tc.in, tc.windows, got, tc.want)
		}
	}
}
