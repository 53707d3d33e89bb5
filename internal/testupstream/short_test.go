package testupstream

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestShortSkipsDovecot: under -short a test that needs Dovecot is skipped
// even where Dovecot could run, as the README promises. It runs one such
// test in a child process of this test binary with -test.short.
func TestShortSkipsDovecot(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the child itself")
	}
	const child = "TestCloseKeepsGivenDir"
	cmd := exec.Command(os.Args[0], "-test.short", "-test.v", "-test.count=1", "-test.run=^"+child+"$")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child test run: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- SKIP: "+child) {
		t.Fatalf("under -short %s was not skipped:\n%s", child, out)
	}
}
