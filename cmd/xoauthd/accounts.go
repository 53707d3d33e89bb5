package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/xoauthd/xoauthd/internal/check"
	"github.com/xoauthd/xoauthd/tokens"
)

// runAccounts lists the identities of the configuration and the store with
// the state of their tokens.
func runAccounts(_ context.Context, inv *invocation) int {
	fs := inv.flagSet("[--json] [--config FILE]")
	path := configFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if code, ok := inv.noArgs(fs); !ok {
		return code
	}
	cfg, code, ok := loadConfig(inv, *path)
	if !ok {
		return code
	}
	store, err := openStore(inv, cfg.Store, false)
	if err != nil {
		return inv.fail(err)
	}
	if store != nil {
		defer store.Close()
	}
	rows, err := tokens.Identities(cfg, store, time.Now())
	if err != nil {
		return inv.fail(err)
	}
	if *asJSON {
		enc := json.NewEncoder(inv.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rows); err != nil {
			return inv.fail(err)
		}
		return exitOK
	}
	printAccounts(inv.stdout, rows, time.Now())
	return exitOK
}

// printAccounts writes the rows as a table.
func printAccounts(w io.Writer, rows []tokens.IdentityStatus, now time.Time) {
	if len(rows) == 0 {
		fmt.Fprintln(w, "No accounts are configured and no tokens are stored.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "IDENTITY\tPROVIDER\tFLOW\tTOKEN\tEXPIRES\tLAST REFRESH\tLAST ERROR")
	for _, r := range rows {
		identity := r.Identity
		if !r.InConfig {
			identity += " (not in the configuration)"
		}
		lastErr := r.LastError
		if lastErr == "" {
			lastErr = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", identity, dash(r.Provider), dash(r.Flow), r.State,
			check.When(r.Expiry, now), check.When(r.LastRefresh, now), lastErr)
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
