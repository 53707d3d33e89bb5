package tokens

import (
	"slices"
	"strings"
	"time"

	"github.com/xoauthd/xoauthd/config"
)

// IdentityStatus is one identity as "xoauthd accounts" and the admin
// console show it: its token state and the local logins that use it.
type IdentityStatus struct {
	Status
	Logins   []string `json:"logins,omitempty"` // local logins that use the identity
	InConfig bool     `json:"in_config"`        // false: only in the store
}

// Identities joins the configured accounts with the store: one row per
// identity and provider, configured ones first in file order, then
// identities that are only in the store. store may be nil (no store yet).
func Identities(cfg *config.Config, store Backend, now time.Time) ([]IdentityStatus, error) {
	var rows []IdentityStatus
	index := map[string]int{} // lower-case identity + provider → row
	for _, a := range cfg.Accounts {
		k := strings.ToLower(a.Identity) + "\x00" + a.Provider
		if i, ok := index[k]; ok {
			rows[i].Logins = append(rows[i].Logins, a.Login)
			continue
		}
		row := IdentityStatus{Status: Status{Identity: a.Identity, Provider: a.Provider, State: StateNoToken},
			Logins: []string{a.Login}, InConfig: true}
		p := cfg.Providers[a.Provider]
		if p != nil {
			row.Flow = p.Flow
		}
		switch {
		case p != nil && p.Flow == config.FlowClientCredentials:
			row.State = StateNotNeeded
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
		if !slices.ContainsFunc(rows, func(r IdentityStatus) bool { return strings.EqualFold(r.Identity, st.Identity) }) {
			rows = append(rows, IdentityStatus{Status: st})
		}
	}
	return rows, nil
}
