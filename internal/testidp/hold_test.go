package testidp

import (
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// TestHoldTokenRequests: an armed hold keeps a refresh unanswered and shows
// its form; after Disarm a new request is answered at once while the held
// one still waits; Release answers it as if it had not waited.
func TestHoldTokenRequests(t *testing.T) {
	p := setup(t, Options{})
	cfg := config(p, testTenant, publicID, "", mailScopes()...)
	rt := login(t, p, cfg, alice).RefreshToken
	before := p.Counts()[grantRefresh]

	h := p.HoldTokenRequests()
	type answer struct {
		tok *oauth2.Token
		err error
	}
	held := make(chan answer, 1)
	go func() {
		tok, err := cfg.TokenSource(t.Context(), &oauth2.Token{RefreshToken: rt}).Token()
		held <- answer{tok, err}
	}()
	select {
	case <-h.Arrived():
	case <-time.After(10 * time.Second):
		t.Fatal("the refresh did not arrive at the hold")
	}
	if got := h.Form().Get("refresh_token"); got != rt {
		t.Errorf("the held form's refresh_token is %q, want the one sent", got)
	}
	if n := p.Counts()[grantRefresh] - before; n != 1 {
		t.Errorf("a held request counted %d times, want 1", n)
	}
	select {
	case a := <-held:
		t.Fatalf("the held refresh was answered before Release: %v, %v", a.tok, a.err)
	case <-time.After(50 * time.Millisecond):
	}

	h.Disarm()
	if _, err := refresh(t, cfg, rt); err != nil {
		t.Fatalf("a refresh after Disarm: %v", err)
	}
	select {
	case a := <-held:
		t.Fatalf("the held refresh was answered after Disarm, before Release: %v, %v", a.tok, a.err)
	default:
	}

	h.Release()
	a := <-held
	if a.err != nil || a.tok.AccessToken == "" || a.tok.RefreshToken == "" || a.tok.RefreshToken == rt {
		t.Fatalf("the released refresh: %v, %+v; want a new token pair", a.err, a.tok)
	}
	h.Release() // a second Release does nothing
}
