package main

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/testidp"
	"github.com/xoauthd/xoauthd/internal/testredis"
	"github.com/xoauthd/xoauthd/tokens"
)

const deviceGrant = "urn:ietf:params:oauth:grant-type:device_code"

// setBackend rewrites the configuration at path to use backend, with a
// store.redis section for srv.
func setBackend(t *testing.T, path string, srv *testredis.Server, backend string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if i := strings.Index(s, "  backend:"); i >= 0 {
		s = s[:i] + s[i+strings.Index(s[i:], "\n")+1:]
	}
	if !strings.Contains(s, "  redis:") {
		s = strings.Replace(s, "store:\n", "store:\n  redis: {url: \""+srv.URL()+"\", prefix: \"cli:\"}\n", 1)
	}
	s = strings.Replace(s, "store:\n", "store:\n  backend: "+backend+"\n", 1)
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// tokenVia returns identity's access token through a Manager over the
// configured backend, as a running xoauthd gets it.
func tokenVia(t *testing.T, cfgPath, identity string, refresh bool) string {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := tokens.LoadKey(cfg.Store)
	if err != nil {
		t.Fatal(err)
	}
	store, err := tokens.OpenBackend(cfg.Store, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	m := tokens.NewManager(store, func(string) (*config.Provider, error) { return cfg.Providers["m365"], nil }, tokens.Options{})
	tok, err := m.Token(context.Background(), identity)
	if err == nil && refresh {
		tok, err = m.Refresh(context.Background(), identity, tok)
	}
	if err != nil {
		t.Fatalf("token of %s from %s: %v", identity, store.Describe(), err)
	}
	return tok
}

// TestStoreMigrateFileRedisFile: identities logged in with the file backend
// move to Redis and back without a new sign-in; login, accounts and logout
// work against Redis as against the file.
func TestStoreMigrateFileRedisFile(t *testing.T) {
	srv := testredis.Start(t)
	idp := testidp.New(t, testidp.Options{DeviceInterval: -1})
	idp.AddClient(testidp.Client{ID: tokenTestClient, Public: true})
	const second = "twice@contoso.onmicrosoft.com"
	cfgPath := tokenConfig(t, idp)
	for _, id := range []string{tokenTestUser, second} {
		idp.AddUser(id)
		idp.SetDeviceAutoApprove(id, 0)
		if code, out, errOut := runCmd(t, "login", id, "--device", "--provider", "m365", "--config", cfgPath); code != exitOK {
			t.Fatalf("login %s: %d\n%s%s", id, code, out, errOut)
		}
	}
	signIns := idp.Counts()[deviceGrant]

	setBackend(t, cfgPath, srv, config.BackendFile)
	code, out, errOut := runCmd(t, "store", "migrate", "--to", "redis", "--config", cfgPath)
	if code != exitOK || !strings.Contains(out, "copied "+tokenTestUser) || !strings.Contains(out, "Copied 2 identities") || !strings.Contains(out, "store.backend: redis") {
		t.Fatalf("migrate --to redis: %d\n%s%s", code, out, errOut)
	}
	setBackend(t, cfgPath, srv, config.BackendRedis)
	_, out, _ = runCmd(t, "accounts", "--config", cfgPath)
	if line := lineWith(out, tokenTestUser); !strings.Contains(line, tokens.StateValid) {
		t.Fatalf("accounts on Redis: %q\n%s", line, out)
	}
	onRedis := tokenVia(t, cfgPath, tokenTestUser, true) // a refresh: Redis now holds newer tokens

	code, out, errOut = runCmd(t, "store", "migrate", "--to", "file", "--config", cfgPath)
	if code != exitOK || !strings.Contains(out, "copied "+tokenTestUser) {
		t.Fatalf("migrate --to file: %d\n%s%s", code, out, errOut)
	}
	setBackend(t, cfgPath, srv, config.BackendFile)
	if tok := tokenVia(t, cfgPath, tokenTestUser, false); tok != onRedis {
		t.Error("the file does not hold the token refreshed on Redis")
	}
	tokenVia(t, cfgPath, second, false)
	// Migrating again keeps what the destination has in a newer state.
	setBackend(t, cfgPath, srv, config.BackendRedis)
	tokenVia(t, cfgPath, second, true)
	_, out, _ = runCmd(t, "store", "migrate", "--to", "redis", "--config", cfgPath)
	if !strings.Contains(out, "kept "+second) || !strings.Contains(out, "copied "+tokenTestUser) {
		t.Errorf("migrating the older file over Redis's newer token of %s:\n%s", second, out)
	}
	if n := idp.Counts()[deviceGrant]; n != signIns {
		t.Errorf("%d sign-ins after the migrations, want %d (none new)", n, signIns)
	}

	// logout and login against Redis.
	if code, out, _ := runCmd(t, "logout", second, "--config", cfgPath); code != exitOK || !strings.Contains(out, "Removed the tokens of "+second) || !strings.Contains(out, "Redis") {
		t.Fatalf("logout on Redis: %d\n%s", code, out)
	}
	_, out, _ = runCmd(t, "accounts", "--config", cfgPath)
	if line := lineWith(out, second); !strings.Contains(line, tokens.StateNoToken) {
		t.Errorf("accounts after logout on Redis: %q", line)
	}
	if code, out, errOut := runCmd(t, "login", second, "--device", "--provider", "m365", "--config", cfgPath); code != exitOK || !strings.Contains(out, "Redis") {
		t.Fatalf("login on Redis: %d\n%s%s", code, out, errOut)
	}
	tokenVia(t, cfgPath, second, false)
}

// TestStoreMigrateUsage: the command says what is missing.
func TestStoreMigrateUsage(t *testing.T) {
	idp := testidp.New(t, testidp.Options{})
	cfgPath := tokenConfig(t, idp)
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"store", "--config", cfgPath}, exitUsage, "one action: migrate"},
		{[]string{"store", "migrate", "--config", cfgPath}, exitUsage, "--to file or --to redis"},
		{[]string{"store", "migrate", "--to", "etcd", "--config", cfgPath}, exitUsage, "--to file or --to redis"},
		{[]string{"store", "migrate", "--to", "redis", "--config", cfgPath}, 1, "store.redis.url is not set"},
	} {
		code, out, errOut := runCmd(t, tc.args...)
		if code != tc.code || !strings.Contains(out+errOut, tc.msg) {
			t.Errorf("%v: %d\n%s%s\nwant %d and %q", tc.args, code, out, errOut, tc.code, tc.msg)
		}
	}
}
