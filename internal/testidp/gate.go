package testidp

import (
	"net/http"
	"sync"
)

// Gate is an http.RoundTripper for one client of the IdP (one replica of
// xoauthd) that holds every request until Open, as a process that stalls
// or was killed while its request was on the way. Arrived is closed when
// the first request reaches the gate. Make one with NewGate.
type Gate struct {
	Arrived chan struct{}
	open    chan struct{}
	arrive  sync.Once
	opening sync.Once
}

// NewGate returns a closed gate.
func NewGate() *Gate {
	return &Gate{Arrived: make(chan struct{}), open: make(chan struct{})}
}

// Open lets the held requests and all later ones through. Opening twice
// does nothing.
func (g *Gate) Open() { g.opening.Do(func() { close(g.open) }) }

// RoundTrip holds req until the gate is open, then sends it.
func (g *Gate) RoundTrip(req *http.Request) (*http.Response, error) {
	g.arrive.Do(func() { close(g.Arrived) })
	select {
	case <-g.open:
	case <-req.Context().Done():
		return nil, req.Context().Err()
	}
	return http.DefaultTransport.RoundTrip(req)
}
