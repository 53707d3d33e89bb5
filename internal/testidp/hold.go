package testidp

import (
	"net/url"
	"sync"
)

// Hold holds the token requests that reach the IdP while it is armed: the
// request has arrived and is counted, and its answer waits until Release,
// as a provider that is slow to answer. Unlike Gate, which a test puts
// into one client's HTTP transport, a Hold works for a client in another
// process (an xoauthd run as its own process). Make one with
// IdP.HoldTokenRequests; Close of the IdP releases it too.
type Hold struct {
	arrived chan struct{} // closed when the first request is held
	release chan struct{} // closed by Release
	once    sync.Once     // closes arrived
	rel     sync.Once     // closes release

	mu    sync.Mutex
	armed bool
	first url.Values // the form of the first held request
}

// HoldTokenRequests arms a new Hold: from now on every request to the
// token endpoint waits (after it was counted in Counts) until the hold is
// released. It replaces a hold armed before, which stays as it is.
func (p *IdP) HoldTokenRequests() *Hold {
	h := &Hold{arrived: make(chan struct{}), release: make(chan struct{}), armed: true}
	p.mu.Lock()
	p.hold = h
	p.mu.Unlock()
	return h
}

// Arrived is closed when the first request is held.
func (h *Hold) Arrived() <-chan struct{} { return h.arrived }

// Form returns the form of the first held request (grant_type,
// refresh_token, …); nil before Arrived is closed.
func (h *Hold) Form() url.Values {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.first
}

// Disarm lets later requests through at once; the ones held so far wait
// on until Release.
func (h *Hold) Disarm() {
	h.mu.Lock()
	h.armed = false
	h.mu.Unlock()
}

// Release disarms the hold and lets the held requests go on: each is then
// answered as it would have been when it arrived (a client that gave up
// or died meanwhile does not get the answer). Releasing twice does nothing.
func (h *Hold) Release() {
	h.Disarm()
	h.rel.Do(func() { close(h.release) })
}

// wait holds a request with form while h is armed, until Release or done.
func (h *Hold) wait(form url.Values, done <-chan struct{}) {
	h.mu.Lock()
	if !h.armed {
		h.mu.Unlock()
		return
	}
	if h.first == nil {
		h.first = form
	}
	h.mu.Unlock()
	h.once.Do(func() { close(h.arrived) })
	select {
	case <-h.release:
	case <-done:
	}
}

// holdRequest holds a token request while a Hold is armed.
func (p *IdP) holdRequest(form url.Values) {
	p.mu.Lock()
	h := p.hold
	p.mu.Unlock()
	if h != nil {
		h.wait(form, p.done)
	}
}
