package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/check"
	"github.com/xoauthd/xoauthd/tokens"
)

// accountRow is one identity in "xoauthd accounts".
type accountRow struct {
	tokens.Status
	Logins   []string `json:"logins,omitempty"` // local logins that use the identity
	InConfig bool     `json:"in_config"`        // false: only in the store
}

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
	rows, err := accountRows(cfg, store, time.Now())
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

// accountRows joins the configured accounts with the store: one row per
// identity and provider, configured ones first in file order, then
// identities that are only in the store. store may be nil (no store yet).
func accountRows(cfg *config.Config, store *tokens.Store, now time.Time) ([]accountRow, error) {
	var rows []accountRow
	index := map[string]int{} // lower-case identity + provider → row
	for _, a := range cfg.Accounts {
		k := strings.ToLower(a.Identity) + "\x00" + a.Provider
		if i, ok := index[k]; ok {
			rows[i].Logins = append(rows[i].Logins, a.Login)
			continue
		}
		row := accountRow{Status: tokens.Status{Identity: a.Identity, Provider: a.Provider, State: tokens.StateNoToken},
			Logins: []string{a.Login}, InConfig: true}
		p := cfg.Providers[a.Provider]
		if p != nil {
			row.Flow = p.Flow
		}
		switch {
		case p != nil && p.Flow == config.FlowClientCredentials:
			row.State = tokens.StateNotNeeded
		case store != nil:
			st, found, err := store.Status(a.Identity, now)
			if err != nil {
				return nil, err
			}
			switch {
			case found && st.Provider != "" && st.Provider != a.Provider:
				row.LastError = "the stored token is for provider " + st.Provider
			case found:
				// The flow stays the one the token was obtained with.
				st.Identity, st.Provider = a.Identity, a.Provider
				row.Status = st
			}
		}
		index[k] = len(rows)
		rows = append(rows, row)
	}
	if store == nil {
		return rows, nil
	}
	stored, err := store.List(now)
	if err != nil {
		return nil, err
	}
	for _, st := range stored {
		if !slices.ContainsFunc(rows, func(r accountRow) bool { return strings.EqualFold(r.Identity, st.Identity) }) {
			rows = append(rows, accountRow{Status: st})
		}
	}
	return rows, nil
}

// printAccounts writes the rows as a table.
func printAccounts(w io.Writer, rows []accountRow, now time.Time) {
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
