package main

import (
	"context"
	"fmt"
	"net/mail"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/check"
	"github.com/xoauthd/xoauthd/tokens"
)

// runCheck is "xoauthd check": the mailbox test of the vendor guides, with
// the cause and the fix of every failure (package check runs the steps).
func runCheck(ctx context.Context, inv *invocation) int {
	fs := inv.flagSet("[LOGIN...] [--send-test ADDRESS] [--json] [--config FILE]")
	path := configFlag(fs)
	sendTo := fs.String("send-test", "", "also send a short test message to `ADDRESS` through each account's smtp upstream")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	logins, code, ok := inv.parse(fs)
	if !ok {
		return code
	}
	if *sendTo != "" {
		addr, err := mail.ParseAddress(*sendTo)
		if err != nil || addr.Name != "" || addr.Address != *sendTo {
			return inv.usageError(fs, "--send-test %q is not a plain e-mail address like someone@example.com", *sendTo)
		}
	}
	cfg, _, ok := loadConfig(inv, *path)
	if !ok {
		return exitUsage
	}
	accounts, err := selectAccounts(cfg, logins)
	if err != nil {
		return inv.usageError(fs, "%v", err)
	}
	// The store is opened without creating anything: a missing store or
	// key is reported by the token step of the accounts that need one.
	store, storeErr := openStore(inv, cfg.Store, false)
	if store != nil {
		defer store.Close()
	}
	c := check.New(check.Options{
		Config: cfg,
		Tokens: func(p *config.Provider) check.Tokens {
			return tokens.NewManager(store, func(string) (*config.Provider, error) { return p, nil }, tokens.Options{})
		},
		StoreMissing: store == nil && storeErr == nil,
		StoreError:   storeErr,
		SendTo:       *sendTo,
		Now:          time.Now,
	})
	report := c.Check(ctx, accounts, nil)
	if *asJSON {
		if err := check.WriteJSON(inv.stdout, report); err != nil {
			return inv.fail(err)
		}
	} else {
		check.WriteText(inv.stdout, report, useColour(inv.stdout))
	}
	if !report.OK {
		return exitFailure
	}
	return exitOK
}

// selectAccounts returns the accounts named by logins, all of them when
// none is named.
func selectAccounts(cfg *config.Config, logins []string) ([]config.Account, error) {
	if len(logins) == 0 {
		if len(cfg.Accounts) == 0 {
			return nil, fmt.Errorf("%s has no accounts to check (hint: add one under accounts:)", cfg.Path)
		}
		return cfg.Accounts, nil
	}
	var out []config.Account
	for _, l := range logins {
		a := cfg.Account(l)
		if a == nil {
			known := make([]string, 0, len(cfg.Accounts))
			for _, k := range cfg.Accounts {
				known = append(known, k.Login)
			}
			return nil, fmt.Errorf("no account with login %q in %s (known: %s)", l, cfg.Path, strings.Join(known, ", "))
		}
		out = append(out, *a)
	}
	return out, nil
}

// useColour reports whether w is a terminal that wants colours.
func useColour(w any) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	return term.IsTerminal(int(f.Fd()))
}
