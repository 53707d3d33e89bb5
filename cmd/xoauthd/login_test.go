package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/passhash"
	"github.com/xoauthd/xoauthd/internal/testidp"
	"github.com/xoauthd/xoauthd/tokens"
)

const (
	tokenTestClient = "33333333-3333-3333-3333-333333333333"
	tokenTestUser   = "billing@contoso.onmicrosoft.com"
)

// tokenConfig writes a configuration whose providers point at idp: m365
// (public client), app (client credentials) and other (a second public
// provider), with accounts for tokenTestUser and an app-only mailbox.
func tokenConfig(t *testing.T, idp *testidp.IdP) string {
	t.Helper()
	dir := t.TempDir()
	hash, err := passhash.Hash("local-password")
	if err != nil {
		t.Fatal(err)
	}
	yaml := `store:
  path: ` + filepath.Join(dir, "tokens.json") + `
  key: ${file:` + filepath.Join(dir, "store.key") + `}
providers:
  m365:
    type: microsoft
    tenant: ` + idp.Tenant() + `
    client_id: ` + tokenTestClient + `
    authority: ` + idp.Authority() + `
  app:
    type: microsoft
    tenant: ` + idp.Tenant() + `
    client_id: app-client
    client_secret: app-secret
    flow: client_credentials
    authority: ` + idp.Authority() + `
  other:
    type: microsoft
    tenant: ` + idp.Tenant() + `
    client_id: other-client
    authority: ` + idp.Authority() + `
accounts:
  - {login: billing, password_hash: "` + hash + `", identity: ` + tokenTestUser + `, provider: m365}
  - {login: billing2, password_hash: "` + hash + `", identity: ` + tokenTestUser + `, provider: m365}
  - {login: robot, password_hash: "` + hash + `", identity: robot@contoso.onmicrosoft.com, provider: app}
  - {login: twice1, password_hash: "` + hash + `", identity: twice@contoso.onmicrosoft.com, provider: m365}
  - {login: twice2, password_hash: "` + hash + `", identity: twice@contoso.onmicrosoft.com, provider: other}
`
	path := filepath.Join(dir, "xoauthd.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// runCmd runs xoauthd with args and returns the exit status and output.
func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestLoginAccountsLogout is the "done when": login --device against
// the test IdP, the identity in accounts, no readable token in the store,
// then logout.
func TestLoginAccountsLogout(t *testing.T) {
	idp := testidp.New(t, testidp.Options{DeviceInterval: -1})
	idp.AddClient(testidp.Client{ID: tokenTestClient, Public: true})
	idp.AddUser(tokenTestUser)
	idp.SetDeviceAutoApprove(tokenTestUser, 0)
	cfgPath := tokenConfig(t, idp)

	code, out, errOut := runCmd(t, "accounts", "--config", cfgPath)
	if code != exitOK || !strings.Contains(out, tokens.StateNoToken) || !strings.Contains(out, tokens.StateNotNeeded) {
		t.Fatalf("accounts before login: %d\n%s%s", code, out, errOut)
	}

	code, out, errOut = runCmd(t, "login", tokenTestUser, "--device", "--config", cfgPath)
	if code != exitOK {
		t.Fatalf("login: %d\n%s%s", code, out, errOut)
	}
	for _, s := range []string{"Created a new store key", "https://microsoft.com/devicelogin", "enter the code", "Logged in as " + tokenTestUser} {
		if !strings.Contains(out, s) {
			t.Errorf("login output lacks %q:\n%s", s, out)
		}
	}

	code, out, errOut = runCmd(t, "accounts", "--config", cfgPath)
	if code != exitOK {
		t.Fatalf("accounts: %d\n%s%s", code, out, errOut)
	}
	line := lineWith(out, tokenTestUser)
	for _, s := range []string{"m365", "device", tokens.StateValid, "(in "} {
		if !strings.Contains(line, s) {
			t.Errorf("accounts line %q lacks %q", line, s)
		}
	}

	code, out, _ = runCmd(t, "accounts", "--json", "--config", cfgPath)
	var rows []accountRow
	if err := json.Unmarshal([]byte(out), &rows); code != exitOK || err != nil {
		t.Fatalf("accounts --json: %d %v\n%s", code, err, out)
	}
	if len(rows) != 4 || rows[0].State != tokens.StateValid || len(rows[0].Logins) != 2 || rows[0].Expiry.IsZero() {
		t.Errorf("accounts --json rows: %+v", rows)
	}

	// The store file holds no readable token or identity.
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(cfg.Store.Path)
	key, _, _ := tokens.LoadKey(cfg.Store)
	store, _ := tokens.OpenStore(cfg.Store.Path, key)
	m := tokens.NewManager(store, func(string) (*config.Provider, error) { return cfg.Providers["m365"], nil }, tokens.Options{})
	at, err := m.Token(context.Background(), tokenTestUser)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{at, tokenTestUser, "refresh_token", "access_token"} {
		if bytes.Contains(raw, []byte(s)) {
			t.Errorf("store file contains %q in plaintext", s)
		}
	}

	code, out, _ = runCmd(t, "logout", tokenTestUser, "--config", cfgPath)
	if code != exitOK || !strings.Contains(out, "Removed the tokens of "+tokenTestUser) {
		t.Fatalf("logout: %d\n%s", code, out)
	}
	code, out, _ = runCmd(t, "logout", tokenTestUser, "--config", cfgPath)
	if code != exitOK || !strings.Contains(out, "Nothing was stored") {
		t.Fatalf("second logout: %d\n%s", code, out)
	}
	_, out, _ = runCmd(t, "accounts", "--config", cfgPath)
	if line := lineWith(out, tokenTestUser); !strings.Contains(line, tokens.StateNoToken) {
		t.Errorf("after logout: %q", line)
	}
}

func TestLoginCommandErrors(t *testing.T) {
	idp := testidp.New(t, testidp.Options{})
	cfgPath := tokenConfig(t, idp)
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"client credentials need no login", []string{"login", "robot@contoso.onmicrosoft.com"}, exitOK, "no login is needed", ""},
		{"ambiguous provider", []string{"login", "twice@contoso.onmicrosoft.com"}, exitFailure, "", "--provider"},
		{"unknown provider", []string{"login", "x@contoso.onmicrosoft.com", "--provider", "nope"}, exitFailure, "", `unknown provider "nope"`},
		{"identity without account", []string{"login", "nobody@contoso.onmicrosoft.com"}, exitFailure, "", "no account"},
		{"no identity", []string{"login"}, exitUsage, "", "exactly one IDENTITY"},
		{"two identities", []string{"logout", "a@b.c", "d@e.f"}, exitUsage, "", "exactly one IDENTITY"},
		{"accounts takes no arguments", []string{"accounts", "extra"}, exitUsage, "", "unexpected argument"},
		{"help", []string{"login", "--help"}, exitOK, "--no-browser", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCmd(t, append(tc.args, "--config", cfgPath)...)
			if code != tc.code || !strings.Contains(out, tc.stdout) || !strings.Contains(errOut, tc.stderr) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s", code, tc.code, out, errOut)
			}
		})
	}
}

// TestAccountsMissingKey: a store without its key is an error naming both.
func TestAccountsMissingKey(t *testing.T) {
	idp := testidp.New(t, testidp.Options{})
	cfgPath := tokenConfig(t, idp)
	dir := filepath.Dir(cfgPath)
	os.WriteFile(filepath.Join(dir, "tokens.json"), []byte("{}"), 0o600)
	code, _, errOut := runCmd(t, "accounts", "--config", cfgPath)
	if code != exitFailure || !strings.Contains(errOut, "store.key") || !strings.Contains(errOut, "tokens.json") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

// lineWith returns the first line of s containing sub.
func lineWith(s, sub string) string {
	for l := range strings.Lines(s) {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}
