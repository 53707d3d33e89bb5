package check

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/passhash"
	"github.com/xoauthd/xoauthd/internal/testidp"
	"github.com/xoauthd/xoauthd/internal/testsignin"
	"github.com/xoauthd/xoauthd/tokens"
)

// Test accounts of the check tests.
const (
	checkAlice    = "alice@contoso.test"
	checkBob      = "bob@contoso.test"
	checkShared   = "shared@contoso.test"
	checkClientID = "3f9d2c41-6b8e-4d0a-9e57-1c2b3a4d5e6f"
)

// checkHash is one argon2id hash shared by the test configurations (hashing
// is slow on purpose).
var checkHash = sync.OnceValues(func() (string, error) { return passhash.Hash("local password") })

// checkEnv is a test identity provider, a configuration and its token store.
type checkEnv struct {
	t        *testing.T
	dir      string
	idp      *testidp.IdP
	servers  []string // YAML flow mappings under servers:
	accounts []string // YAML flow mappings under accounts:
	path     string   // the configuration file, after write
	// appSecret switches the provider to client credentials with this
	// secret (see clientCredentials).
	appSecret string
}

// clientCredentials registers the app as a confidential client and makes
// the provider use the client credentials flow.
func (e *checkEnv) clientCredentials() {
	e.appSecret = "app secret value"
	e.idp.AddClient(testidp.Client{ID: checkClientID, Secret: e.appSecret})
}

func newCheckEnv(t *testing.T) *checkEnv {
	t.Helper()
	e := &checkEnv{t: t, dir: t.TempDir()}
	e.idp = testidp.New(t, testidp.Options{})
	e.idp.AddClient(testidp.Client{ID: checkClientID, Public: true})
	e.idp.AddUser(checkAlice)
	e.idp.AddUser(checkBob)
	return e
}

// server adds a server entry; extra is more YAML keys ("upstream_tls: starttls").
func (e *checkEnv) server(proto, upstream, caFile, extra string) {
	s := fmt.Sprintf(`{protocol: %s, listen: "127.0.0.1:%d", upstream: "%s"`, proto, 20000+len(e.servers), upstream)
	if caFile != "" {
		s += fmt.Sprintf(`, ca_file: "%s"`, caFile)
	}
	if extra != "" {
		s += ", " + extra
	}
	e.servers = append(e.servers, s+"}")
}

// account adds an account; mailbox "" means the identity's own.
func (e *checkEnv) account(login, identity, mailbox string) {
	hash, err := checkHash()
	if err != nil {
		e.t.Fatal(err)
	}
	s := fmt.Sprintf(`{login: %s, password_hash: "%s", identity: %s, provider: test`, login, hash, identity)
	if mailbox != "" {
		s += ", mailbox: " + mailbox
	}
	e.accounts = append(e.accounts, s+"}")
}

// write writes the configuration file.
func (e *checkEnv) write() string {
	e.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "store:\n  path: %[1]s/tokens.json\n  key: ${file:%[1]s/store.key}\n", e.dir)
	flow := "flow: authcode"
	if e.appSecret != "" {
		flow = fmt.Sprintf("flow: client_credentials\n    client_secret: %q", e.appSecret)
	}
	fmt.Fprintf(&b, "providers:\n  test:\n    type: microsoft\n    tenant: %s\n    client_id: %s\n    %s\n    authority: %s\n",
		e.idp.Tenant(), checkClientID, flow, e.idp.Authority())
	if len(e.servers) > 0 {
		b.WriteString("servers:\n")
		for _, s := range e.servers {
			b.WriteString("  - " + s + "\n")
		}
	}
	b.WriteString("accounts:\n")
	for _, a := range e.accounts {
		b.WriteString("  - " + a + "\n")
	}
	e.path = filepath.Join(e.dir, "xoauthd.yaml")
	if err := os.WriteFile(e.path, []byte(b.String()), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return e.path
}

// login signs identity in with the authorization code flow, the test IdP
// playing the browser, as "xoauthd login" would.
func (e *checkEnv) login(identity string) {
	e.t.Helper()
	cfg, err := config.Load(e.path)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := testsignin.SignIn(ctx, cfg, "test", identity, e.idp.Authorize); err != nil {
		e.t.Fatal(err)
	}
}

// checker builds a Checker over the written configuration and its token
// store, as "xoauthd check" does; sendTo is the --send-test address.
func (e *checkEnv) checker(sendTo string) (*Checker, *config.Config) {
	e.t.Helper()
	cfg, err := config.Load(e.path)
	if err != nil {
		e.t.Fatal(err)
	}
	opts := Options{Config: cfg, SendTo: sendTo, StepTimeout: 30 * time.Second}
	var store *tokens.Store
	if _, err := os.Stat(cfg.Store.Path); err != nil {
		opts.StoreMissing = true
	} else {
		key, _, err := tokens.LoadKey(cfg.Store)
		if err != nil {
			e.t.Fatal(err)
		}
		if store, err = tokens.OpenStore(cfg.Store.Path, key); err != nil {
			e.t.Fatal(err)
		}
	}
	opts.Tokens = func(p *config.Provider) Tokens {
		return tokens.NewManager(store, func(string) (*config.Provider, error) { return p, nil }, tokens.Options{})
	}
	return New(opts), cfg
}

// report checks the given logins (all accounts when none); sendTo is the
// --send-test address, "" for none.
func (e *checkEnv) report(sendTo string, logins ...string) Report {
	e.t.Helper()
	c, cfg := e.checker(sendTo)
	accounts := cfg.Accounts
	if len(logins) > 0 {
		accounts = nil
		for _, l := range logins {
			accounts = append(accounts, *cfg.Account(l))
		}
	}
	return c.Check(context.Background(), accounts, nil)
}

// text is the report as "xoauthd check" prints it, without colour.
func text(r Report) string {
	var b strings.Builder
	WriteText(&b, r, false)
	return b.String()
}

// step returns the named step of the report's first account.
func step(t *testing.T, r Report, name string) Step {
	t.Helper()
	if len(r.Accounts) == 0 {
		t.Fatalf("no accounts in the report")
	}
	for _, s := range r.Accounts[0].Steps {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no step %s in %+v", name, r.Accounts[0].Steps)
	return Step{}
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
