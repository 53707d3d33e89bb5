package tokens

import (
	"time"
)

// Token states shown by "xoauthd accounts".
const (
	StateValid      = "valid"         // access token usable now
	StateExpired    = "expired"       // access token expired; refreshed on next use
	StateNeedsLogin = "needs login"   // the refresh token was refused
	StateNoToken    = "not logged in" // nothing stored
	StateNotNeeded  = "no login needed (client credentials)"
)

// Status describes one identity's stored tokens without revealing them.
type Status struct {
	Identity    string    `json:"identity"`
	Provider    string    `json:"provider"`
	Flow        string    `json:"flow"`
	User        string    `json:"signed_in_user,omitempty"` // the account that signed in
	State       string    `json:"state"`
	Expiry      time.Time `json:"access_token_expiry,omitzero"`
	LoggedIn    time.Time `json:"logged_in,omitzero"`
	LastRefresh time.Time `json:"last_refresh,omitzero"`
	LastError   string    `json:"last_error,omitempty"` // in words; empty after a success
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Status returns identity's state at time now; ok is false when the store
// has nothing for it.
func (s *Store) Status(identity string, now time.Time) (st Status, ok bool, err error) {
	return statusFrom(s.get, identity, now)
}

// List returns the state of every identity in the store, sorted by identity.
func (s *Store) List(now time.Time) ([]Status, error) {
	return listFrom(s.all, now)
}

// statusFrom is Status over a backend's get.
func statusFrom(get func(string) (record, bool, error), identity string, now time.Time) (Status, bool, error) {
	r, ok, err := get(identity)
	if err != nil || !ok {
		return Status{Identity: identity, State: StateNoToken}, false, err
	}
	return r.status(now), true, nil
}

// listFrom is List over a backend's all.
func listFrom(all func() ([]record, error), now time.Time) ([]Status, error) {
	recs, err := all()
	if err != nil {
		return nil, err
	}
	out := make([]Status, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.status(now))
	}
	return out, nil
}

func (r record) status(now time.Time) Status {
	st := Status{
		Identity: r.Identity, Provider: r.Provider, Flow: r.Flow, User: r.User,
		Expiry: r.Expiry, LoggedIn: r.LoggedIn, LastRefresh: r.LastRefresh,
	}
	switch {
	case r.LastError != nil && r.LastError.Class == classNeedsLogin.String():
		st.State = StateNeedsLogin
	case r.AccessToken != "" && now.Before(r.Expiry):
		st.State = StateValid
	default:
		st.State = StateExpired
	}
	if r.LastError != nil {
		st.LastError, st.LastErrorAt = r.LastError.Message, r.LastError.At
	}
	return st
}
