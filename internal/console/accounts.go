package console

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/check"
	"github.com/xoauthd/xoauthd/tokens"
)

// accountsView is the data of the accounts page.
type accountsView struct {
	Config     string // the configuration file
	Accounts   []accountView
	Identities []identityView
	Servers    []serverView
	StoreError string // why the token states could not be read; "" when they could
}

// accountView is one account of the configuration in force.
type accountView struct {
	Login, Identity, Mailbox, Provider, Flow string
	State                                    string // the identity's token state in words
	Failures                                 []Event
}

// identityView is one identity with its token state.
type identityView struct {
	tokens.IdentityStatus
	Words       string // the state as a sentence
	NeedsSignIn bool   // no usable refresh token: Connect is the next step
	AppOnly     bool   // client credentials: no sign-in
	Stored      bool   // something is stored (Sign out has something to remove)
}

// serverView is one listener and its upstreams.
type serverView struct {
	Protocol, Listen string
	Upstreams        []string // "host:port (provider, ...)"
}

// home is /: the accounts page, or the identity provider's redirect back
// to the console after Connect (it carries state).
func (c *Console) home(w http.ResponseWriter, r *http.Request) {
	if q := r.URL.Query(); q.Has("state") || q.Has("code") || q.Has("error") {
		c.callback(w, r)
		return
	}
	s := c.session(r)
	if s == nil {
		http.Redirect(w, r, "/signin", http.StatusSeeOther)
		return
	}
	v := c.accounts()
	c.render(w, r, http.StatusOK, "accounts.html", page{Title: "Accounts", CSRF: s.csrf, SignedIn: true,
		Notices: c.takeNotices(s), Data: v})
}

// accountPage shows one account: the accounts page's facts about it and
// its Test button. An account a reload removed is gone, and says so.
func (c *Console) accountPage(w http.ResponseWriter, r *http.Request, s *session) {
	login := r.PathValue("login")
	v := c.accounts()
	for _, a := range v.Accounts {
		if strings.EqualFold(a.Login, login) {
			var id *identityView
			for i := range v.Identities {
				if strings.EqualFold(v.Identities[i].Identity, a.Identity) && v.Identities[i].Provider == a.Provider {
					id = &v.Identities[i]
				}
			}
			c.render(w, r, http.StatusOK, "account.html", page{Title: "Account " + a.Login, CSRF: s.csrf, SignedIn: true,
				Notices: c.takeNotices(s), Data: struct {
					Account  accountView
					Identity *identityView
				}{a, id}})
			return
		}
	}
	c.fail(w, r, s, http.StatusNotFound, fmt.Sprintf("There is no account %q in the configuration in force (a reload may have removed it).", login))
}

// accounts reads the configuration in force and the token store.
func (c *Console) accounts() accountsView {
	cfg := c.opts.Config()
	now := c.opts.Now()
	v := accountsView{Config: cfg.Path}
	rows, err := tokens.Identities(cfg, c.opts.Store, now)
	if err != nil {
		v.StoreError = err.Error()
	}
	for _, row := range rows {
		if !row.InConfig {
			continue
		}
		words := stateWords(row.Status, now)
		if row.State == tokens.StateNotNeeded {
			words = c.appWords(row.Identity, now)
		}
		v.Identities = append(v.Identities, identityView{IdentityStatus: row, Words: words,
			NeedsSignIn: row.State == tokens.StateNoToken || row.State == tokens.StateNeedsLogin,
			AppOnly:     row.State == tokens.StateNotNeeded,
			Stored:      row.State != tokens.StateNoToken && row.State != tokens.StateNotNeeded})
	}
	for _, a := range cfg.Accounts {
		av := accountView{Login: a.Login, Identity: a.Identity, Mailbox: a.Mailbox, Provider: a.Provider}
		if p := cfg.Providers[a.Provider]; p != nil {
			av.Flow = p.Flow
		}
		for _, id := range v.Identities {
			if strings.EqualFold(id.Identity, a.Identity) && id.Provider == a.Provider {
				av.State = id.Words
			}
		}
		if c.opts.Events != nil {
			av.Failures = c.opts.Events.Recent(a.Login)
		}
		v.Accounts = append(v.Accounts, av)
	}
	v.Servers = servers(cfg)
	return v
}

// servers lists the listeners with the upstream of each provider in use.
func servers(cfg *config.Config) []serverView {
	used := map[string]bool{}
	for _, a := range cfg.Accounts {
		used[a.Provider] = true
	}
	var out []serverView
	for i := range cfg.Servers {
		srv := &cfg.Servers[i]
		sv := serverView{Protocol: srv.Protocol, Listen: srv.Listen}
		var addrs []string
		names := map[string][]string{} // upstream → the providers that use it
		for _, name := range slices.Sorted(maps.Keys(used)) {
			if addr, _ := srv.UpstreamFor(cfg.Providers[name]); addr != "" {
				if names[addr] == nil {
					addrs = append(addrs, addr)
				}
				names[addr] = append(names[addr], name)
			}
		}
		for _, addr := range addrs {
			sv.Upstreams = append(sv.Upstreams, addr+" ("+strings.Join(names[addr], ", ")+")")
		}
		out = append(out, sv)
	}
	return out
}

// stateWords says an identity's token state as a sentence.
func stateWords(st tokens.Status, now time.Time) string {
	who := ""
	if st.User != "" {
		who = " as " + st.User
	}
	switch st.State {
	case tokens.StateValid:
		return fmt.Sprintf("Signed in%s. The access token expires %s; last refresh %s.", who,
			relative(st.Expiry, now), relative(st.LastRefresh, now))
	case tokens.StateExpired:
		s := fmt.Sprintf("Signed in%s. The access token expired %s and is refreshed at the next use; last refresh %s.", who,
			relative(st.Expiry, now), relative(st.LastRefresh, now))
		if st.LastError != "" {
			s += " Last error: " + st.LastError
		}
		return s
	case tokens.StateNeedsLogin:
		return "Needs sign-in: " + st.LastError
	}
	if st.LastError != "" {
		return "Not signed in: " + st.LastError
	}
	return "Not signed in: press Connect."
}

// appTokens is what the daemon's token manager tells about app-only tokens.
type appTokens interface {
	AppToken(identity string) (tokens.AppTokenState, bool)
}

// appWords says the state of a client-credentials identity's app-only
// token, as far as the token manager knows it.
func (c *Console) appWords(identity string, now time.Time) string {
	s := "No sign-in needed: xoauthd gets app-only tokens with the app's own credentials (client credentials)."
	m, ok := c.opts.Tokens.(appTokens)
	if !ok {
		return s + " Test gets one now."
	}
	st, ok := m.AppToken(identity)
	switch {
	case !ok:
		return s
	case st.LastError != "":
		s += " Getting one failed: " + st.LastError
	case !st.Expiry.IsZero() && now.Before(st.Expiry):
		s += " The app-only token in use expires " + relative(st.Expiry, now) + "."
	default:
		s += " None is held now; the next login or Test gets one."
	}
	return s
}

// relative is a time as check prints it, or "never".
func relative(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return check.When(t, now)
}
