package testupstream

import (
	"errors"
	"testing"
)

// New starts Dovecot for a test and closes it (removing its directory) when
// the test ends; a failed test gets Dovecot's log. Under -short the test is
// skipped, whether or not Dovecot could run here. When Dovecot cannot run
// here, the test fails with a message naming the Debian packages to install.
func New(t testing.TB, opts Options) *Dovecot {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping test that needs dovecot in -short mode")
	}
	d, err := Start(opts)
	if errors.Is(err, ErrUnavailable) {
		t.Fatalf("%v; or run with -short to skip tests that need dovecot", err)
	}
	if err != nil {
		t.Fatalf("starting dovecot: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dovecot log (%s):\n%s", d.Dir, d.Log())
		}
		if err := d.Close(); err != nil {
			t.Errorf("closing dovecot: %v", err)
		}
	})
	return d
}
