package testsignin

import (
	"context"
	"fmt"
	"strings"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/testidp"
	"github.com/xoauthd/xoauthd/tokens"
)

// SignIn signs identity in with the authorization code flow of the
// provider named provider in cfg and stores its refresh token in cfg's
// token store, a file or Redis (making the store's key where cfg says
// so). authorize, a testidp IdP's or Recorder's Authorize, plays the
// browser. It fails when the identity provider signs in another user than
// identity.
func SignIn(ctx context.Context, cfg *config.Config, provider, identity string, authorize func(authURL string) (string, error)) error {
	p, ok := cfg.Providers[provider]
	if !ok {
		return fmt.Errorf("signing %s in: the configuration has no provider %q", identity, provider)
	}
	key, _, err := tokens.LoadKey(cfg.Store)
	if err != nil {
		return fmt.Errorf("signing %s in: loading the token store key: %w", identity, err)
	}
	store, err := tokens.OpenBackend(cfg.Store, key, nil)
	if err != nil {
		return fmt.Errorf("signing %s in: opening the token store: %w", identity, err)
	}
	defer store.Close()
	res, err := tokens.Login(ctx, store, p, identity, tokens.LoginOptions{OpenBrowser: testidp.Browser(authorize)})
	if err != nil {
		return fmt.Errorf("signing %s in through the test identity provider: %w", identity, err)
	}
	if !strings.EqualFold(res.User, identity) {
		return fmt.Errorf("signing %s in: the identity provider signed in %s", identity, res.User)
	}
	return nil
}
