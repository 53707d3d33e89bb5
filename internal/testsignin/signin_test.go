package testsignin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/testidp"
	"github.com/xoauthd/xoauthd/tokens"
)

const (
	clientID = "0b7d5a4e-2c1f-4e8a-9d3b-6f5e4d3c2b1a"
	alice    = "alice@contoso.test"
)

func TestSignInStoresTheRefreshToken(t *testing.T) {
	idp := testidp.New(t, testidp.Options{})
	idp.AddClient(testidp.Client{ID: clientID, Public: true})
	idp.AddUser(alice)
	dir := t.TempDir()
	yaml := fmt.Sprintf(`store: {path: %[1]s/tokens.json, key: "${file:%[1]s/store.key}"}
providers:
  test: {type: microsoft, tenant: %[2]s, client_id: %[3]s, flow: authcode, authority: "%[4]s"}
accounts: []
`, dir, idp.Tenant(), clientID, idp.Authority())
	path := filepath.Join(dir, "xoauthd.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if err := SignIn(ctx, cfg, "other", alice, idp.Authorize); err == nil || !strings.Contains(err.Error(), `no provider "other"`) {
		t.Errorf("an unknown provider gave %v", err)
	}
	if err := SignIn(ctx, cfg, "test", alice, idp.Authorize); err != nil {
		t.Fatal(err)
	}
	key, _, err := tokens.LoadKey(cfg.Store)
	if err != nil {
		t.Fatal(err)
	}
	store, err := tokens.OpenStore(cfg.Store.Path, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := store.Status(alice, time.Now()); err != nil || !ok {
		t.Errorf("the store has no token of %s: %v", alice, err)
	}
}
