package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/tokens"
)

// runStore runs "xoauthd store migrate --to file|redis": it copies every
// identity's tokens from the other backend to the one named, with the same
// store key, so that switching store.backend needs no new sign-in.
func runStore(_ context.Context, inv *invocation) int {
	fs := inv.flagSet("migrate --to file|redis [--config FILE]")
	path := configFlag(fs)
	to := fs.String("to", "", "the backend to copy the tokens to: file (store.path) or redis (store.redis)")
	pos, code, ok := inv.parse(fs)
	if !ok {
		return code
	}
	if len(pos) != 1 || pos[0] != "migrate" {
		return inv.usageError(fs, "the store command has one action: migrate")
	}
	if *to != config.BackendFile && *to != config.BackendRedis {
		return inv.usageError(fs, "migrate needs --to file or --to redis")
	}
	cfg, code, ok := loadConfig(inv, *path)
	if !ok {
		return code
	}
	src, dst, err := migrationEnds(cfg.Store, *to)
	if err != nil {
		return inv.fail(err)
	}
	key, _, err := tokens.LoadKey(withBackend(cfg.Store, config.BackendRedis)) // never creates a key
	if err != nil {
		return inv.fail(err)
	}
	from, err := tokens.OpenBackend(src, key, nil)
	if err != nil {
		return inv.fail(err)
	}
	defer from.Close()
	into, err := tokens.OpenBackend(dst, key, nil)
	if err != nil {
		return inv.fail(err)
	}
	defer into.Close()
	res, err := tokens.Migrate(from, into)
	for _, id := range res.Copied {
		fmt.Fprintf(inv.stdout, "copied %s\n", id)
	}
	for _, id := range res.Kept {
		fmt.Fprintf(inv.stdout, "kept %s: %s already has newer tokens for it\n", id, into.Describe())
	}
	if err != nil {
		return inv.fail(err)
	}
	fmt.Fprintf(inv.stdout, "Copied %d identities from %s to %s (%d kept as they were); %s is unchanged.\n",
		len(res.Copied), from.Describe(), into.Describe(), len(res.Kept), from.Describe())
	if cfg.Store.Backend != *to {
		fmt.Fprintf(inv.stdout, "Set store.backend: %s in %s and reload or restart xoauthd to use it.\n", *to, cfg.Path)
	}
	return exitOK
}

// migrationEnds returns the store configurations to copy from and to.
func migrationEnds(s config.Store, to string) (from, into config.Store, err error) {
	if s.Redis.URL == "" {
		return s, s, errors.New("store.redis.url is not set: add the store.redis section (url, and password if any) next to store.path, then migrate")
	}
	if s.Redis.Prefix == "" {
		s.Redis.Prefix = config.DefaultRedisPrefix
	}
	other := config.BackendRedis
	if to == config.BackendRedis {
		other = config.BackendFile
	}
	return withBackend(s, other), withBackend(s, to), nil
}

// withBackend returns s with its backend set to b.
func withBackend(s config.Store, b string) config.Store {
	s.Backend = b
	return s
}
