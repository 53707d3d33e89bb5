package tokens

import (
	"time"

	"github.com/xoauthd/xoauthd/config"
)

// AppTokenState describes the app-only token (client credentials) that a
// Manager holds for an identity, without revealing it.
type AppTokenState struct {
	Expiry    time.Time // of the cached token; zero when none is cached
	LastError string    // the last failure to get one, in words; "" when none
}

// AppToken returns the state of the app-only token the Manager holds for
// identity's client-credentials provider; ok is false for an identity whose
// provider uses another flow or cannot be resolved.
func (m *Manager) AppToken(identity string) (st AppTokenState, ok bool) {
	p, err := m.provider(identity)
	if err != nil || p.flow != config.FlowClientCredentials {
		return AppTokenState{}, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.ids[appKey(p)]
	if s == nil {
		return AppTokenState{}, true
	}
	if s.app != nil {
		st.Expiry = s.app.expiry
	}
	if s.failErr != nil {
		st.LastError = s.failErr.Error()
	}
	return st, true
}
