package main

import (
	"context"
	"fmt"
)

// runLogout removes an identity's tokens from the store.
func runLogout(_ context.Context, inv *invocation) int {
	fs := inv.flagSet("IDENTITY [--config FILE]")
	path := configFlag(fs)
	pos, code, ok := inv.parse(fs)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return inv.usageError(fs, "logout needs exactly one IDENTITY")
	}
	identity := pos[0]
	cfg, code, ok := loadConfig(inv, *path)
	if !ok {
		return code
	}
	store, err := openStore(inv, cfg.Store, false)
	if err != nil {
		return inv.fail(err)
	}
	found := false
	if store != nil {
		defer store.Close()
		if found, err = store.Delete(identity); err != nil {
			return inv.fail(err)
		}
	}
	if !found {
		fmt.Fprintf(inv.stdout, "Nothing was stored for %s.\n", identity)
		return exitOK
	}
	fmt.Fprintf(inv.stdout, "Removed the tokens of %s from %s; its accounts fail until \"xoauthd login %s\".\n"+
		"This does not revoke the sign-in at the provider: to do that, sign out of the app's sessions there\n"+
		"(Microsoft: My Account > Sign out everywhere, or an admin revokes the user's sessions).\n",
		identity, store.Describe(), identity)
	return exitOK
}
