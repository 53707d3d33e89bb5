package testidp

import "testing"

// New starts an IdP for a test and closes it when the test ends.
func New(t testing.TB, opts Options) *IdP {
	t.Helper()
	p, err := Start(opts)
	if err != nil {
		t.Fatalf("starting test identity provider: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}
