package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/check"
	"github.com/xoauthd/xoauthd/tokens"
)

// runLogin signs an identity in interactively and stores its tokens.
func runLogin(ctx context.Context, inv *invocation) int {
	fs := inv.flagSet("IDENTITY [--device] [--no-browser] [--provider NAME] [--config FILE]")
	path := configFlag(fs)
	device := fs.Bool("device", false, "sign in with a code entered on any device instead of a browser on this machine")
	noBrowser := fs.Bool("no-browser", false, "only print the sign-in address; do not open a browser")
	providerName := fs.String("provider", "", "the provider `NAME` to use when the identity's accounts use more than one")
	pos, code, ok := inv.parse(fs)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return inv.usageError(fs, "login needs exactly one IDENTITY (the e-mail address whose token to get)")
	}
	identity := pos[0]
	cfg, code, ok := loadConfig(inv, *path)
	if !ok {
		return code
	}
	prov, err := providerForIdentity(cfg, identity, *providerName)
	if err != nil {
		return inv.fail(err)
	}
	if prov.Flow == config.FlowClientCredentials {
		fmt.Fprintf(inv.stdout, "%s uses provider %s with client credentials: no login is needed; "+
			"xoauthd gets tokens with the app's own credentials.\n", identity, prov.Name)
		return exitOK
	}
	store, err := openStore(inv, cfg.Store, true)
	if err != nil {
		return inv.fail(err)
	}
	defer store.Close()
	res, err := tokens.Login(ctx, store, prov, identity, tokens.LoginOptions{
		Device: *device, NoBrowser: *noBrowser, Out: inv.stdout,
	})
	if err != nil {
		return inv.fail(err)
	}
	who := res.User
	if who == "" {
		who = res.Identity
	}
	fmt.Fprintf(inv.stdout, "\nLogged in as %s (provider %s, %s flow). The access token is valid until %s.\n"+
		"The tokens are stored encrypted in %s; a running \"xoauthd serve\" uses them without a restart.\n",
		who, res.Provider, res.Flow, res.Expiry.Local().Format(time.DateTime), store.Describe())
	return exitOK
}

// loadConfig loads the configuration, printing every problem like validate
// does. ok false carries the exit status.
func loadConfig(inv *invocation, path string) (*config.Config, int, bool) {
	cfg, err := config.Load(path)
	var problems config.Problems
	if errors.As(err, &problems) {
		fmt.Fprintf(inv.stderr, "%s: %s; run \"xoauthd validate --config %s\"\n", path, check.Plural(len(problems), "problem"), path)
		for _, p := range problems {
			fmt.Fprintf(inv.stderr, "  %s\n", p)
		}
		return nil, exitFailure, false
	}
	if err != nil {
		return nil, inv.fail(err), false
	}
	return cfg, exitOK, true
}

// providerForIdentity finds the provider an identity logs in with: the one
// named, else the one its accounts use, else the only one configured.
func providerForIdentity(cfg *config.Config, identity, name string) (*config.Provider, error) {
	known := slices.Sorted(maps.Keys(cfg.Providers))
	if name != "" {
		p := cfg.Providers[name]
		if p == nil {
			return nil, fmt.Errorf("unknown provider %q; known: %s", name, strings.Join(known, ", "))
		}
		return p, nil
	}
	var used []string
	for _, a := range cfg.Accounts {
		if strings.EqualFold(a.Identity, identity) && !slices.Contains(used, a.Provider) {
			used = append(used, a.Provider)
		}
	}
	switch {
	case len(used) == 1:
		if p := cfg.Providers[used[0]]; p != nil {
			return p, nil
		}
		return nil, fmt.Errorf("the accounts of %s name provider %q, which is not configured", identity, used[0])
	case len(used) > 1:
		slices.Sort(used)
		return nil, fmt.Errorf("the accounts of %s use the providers %s; pick one with --provider NAME", identity, strings.Join(used, ", "))
	case len(known) == 1:
		return cfg.Providers[known[0]], nil
	}
	return nil, fmt.Errorf("no account in %s has identity %s (hint: add an account for it, or pass --provider NAME; known providers: %s)",
		cfg.Path, identity, strings.Join(known, ", "))
}

// openStore loads the store key and opens the token store (the file or
// Redis, as store.backend says). With create the key file is created when
// missing (and the person is told); without it a file store that does not
// exist yet is returned as nil. The caller closes what it gets.
func openStore(inv *invocation, s config.Store, create bool) (tokens.Backend, error) {
	if !create && s.Key == "" && !s.IsRedis() {
		if _, err := os.Stat(s.Path); errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if _, err := os.Stat(s.KeyFile); s.KeyFile != "" && errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("token store %s exists but its key file %s is missing (hint: restore the key, or move the store away and log in again)", s.Path, s.KeyFile)
		}
	}
	key, created, err := tokens.LoadKey(s)
	if err != nil {
		return nil, err
	}
	if created {
		fmt.Fprintf(inv.stdout, "Created a new store key in %s (mode 0600). Back it up: without it the stored tokens cannot be read.\n\n", s.KeyFile)
	}
	return tokens.OpenBackend(s, key, nil)
}
