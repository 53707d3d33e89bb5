package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/daemon"
	"github.com/xoauthd/xoauthd/internal/passhash"
	"github.com/xoauthd/xoauthd/internal/testidp"
	"github.com/xoauthd/xoauthd/internal/testsignin"
	"github.com/xoauthd/xoauthd/internal/testupstream"

	"github.com/xoauthd/xoauthd/internal/testkit"
)

// Test accounts: the local logins a legacy client would type.
const (
	alice      = "alice@contoso.test" // identity and mailbox
	aliceLogin = "erp-alice"
	alicePass  = "local pw 1"
	bob        = "bob@contoso.test"
	bobLogin   = "erp-bob"
	bobPass    = "local pw 2"
	clientID   = "7d1c7bde-0f1a-4c3e-9a55-5b0f7e3f6a11"
)

// rig is one Dovecot, one identity provider and one xoauthd daemon.
type rig struct {
	t    *testing.T
	idp  *testidp.IdP
	dc   *testupstream.Dovecot
	d    *daemon.Daemon
	dir  string
	cfg  *config.Config
	logs *testkit.SyncBuffer

	imap, pop3, smtp string // xoauthd's listen addresses
}

// newRig starts everything and signs alice and bob in through the
// authorization code flow, the way `xoauthd login` does.
func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{t: t, dir: t.TempDir(), logs: &testkit.SyncBuffer{}}
	r.idp = testidp.New(t, testidp.Options{})
	r.idp.AddClient(testidp.Client{ID: clientID, Public: true})
	r.idp.AddUser(alice)
	r.idp.AddUser(bob)
	r.dc = testupstream.New(t, testupstream.Options{JWTKey: r.idp.SigningKey()})

	r.imap, r.pop3, r.smtp = testkit.FreeAddr(t), testkit.FreeAddr(t), testkit.FreeAddr(t)
	r.start(r.configYAML(), alice, bob)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dovecot log:\n%s", r.dc.Log())
		}
	})
	return r
}

// start writes the configuration yaml, signs identities in and starts the
// daemon on it.
func (r *rig) start(yaml string, identities ...string) {
	t := r.t
	t.Helper()
	path := r.configPath()
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("loading the test configuration: %v", err)
	}
	r.cfg = cfg
	for _, id := range identities {
		r.login(id)
	}
	log := slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r.d, err = daemon.New(cfg, daemon.Options{Log: log, OnPanic: func(v any) { t.Errorf("recovered panic: %v", v) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := r.d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = r.d.Shutdown(sctx)
		cancel()
		if t.Failed() {
			t.Logf("xoauthd log:\n%s", r.logs.String())
		}
	})
}

func (r *rig) configYAML() string {
	hashA, err := passhash.Hash(alicePass)
	if err != nil {
		r.t.Fatal(err)
	}
	hashB, err := passhash.Hash(bobPass)
	if err != nil {
		r.t.Fatal(err)
	}
	return r.configWith([]rigAccount{{aliceLogin, hashA, alice}, {bobLogin, hashB, bob}})
}

// rigAccount is one entry of accounts: in the test configuration.
type rigAccount struct{ login, passwordHash, identity string }

// configWith is the test configuration with the given accounts.
func (r *rig) configWith(accounts []rigAccount) string {
	var b strings.Builder
	fmt.Fprintf(&b, `log: {level: debug}
store:
  path: %[1]s/tokens.json
  key: ${file:%[1]s/store.key}
providers:
  test:
    type: microsoft
    tenant: %[2]s
    client_id: %[3]s
    flow: authcode
    authority: %[4]s
servers:
  - {protocol: imap, listen: "%[5]s", upstream: "%[6]s", ca_file: "%[7]s"}
  - {protocol: pop3, listen: "%[8]s", upstream: "%[9]s", ca_file: "%[7]s"}
  - {protocol: smtp, listen: "%[10]s", upstream: "%[11]s", upstream_tls: starttls, ca_file: "%[7]s"}
accounts:
`, r.dir, r.idp.Tenant(), clientID, r.idp.Authority(),
		r.imap, r.dc.IMAPAddr, r.dc.CAFile,
		r.pop3, r.dc.POP3Addr,
		r.smtp, r.dc.SubmissionAddr)
	for _, a := range accounts {
		fmt.Fprintf(&b, "  - {login: %s, password_hash: \"%s\", identity: %s, provider: test}\n", a.login, a.passwordHash, a.identity)
	}
	return b.String()
}

// configPath is the configuration file the daemon was loaded from.
func (r *rig) configPath() string { return filepath.Join(r.dir, "xoauthd.yaml") }

// replaceConfig replaces the file at path the way editors save: a new file
// beside it, renamed over it.
func (r *rig) replaceConfig(path, content string) {
	r.t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		r.t.Fatal(err)
	}
}

// login signs identity in with the authorization code flow, the test IdP
// playing the browser.
func (r *rig) login(identity string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := testsignin.SignIn(ctx, r.cfg, "test", identity, r.idp.Authorize); err != nil {
		r.t.Fatal(err)
	}
}

// syncBuffer is the rig's log sink; the redis tests name it so.
type syncBuffer = testkit.SyncBuffer

// waitUntil is testkit.Eventually with the e2e tests' bound (the redis
// tests call it so).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, 15*time.Second, what, cond)
}

// b64 is standard base64 with padding.
func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
