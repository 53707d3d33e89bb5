package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xoauthd/xoauthd/internal/check"
	"github.com/xoauthd/xoauthd/internal/testidp"
)

// The steps themselves are tested in package check; these tests cover the
// command: its flags, the accounts it selects, its output and exit status.

// checkConfig is tokenConfig with the app-only client registered at the
// IdP, so that the robot account (client credentials) passes its token step
// without a login.
func checkConfig(t *testing.T) string {
	t.Helper()
	idp := testidp.New(t, testidp.Options{})
	idp.AddClient(testidp.Client{ID: "app-client", Secret: "app-secret"})
	return tokenConfig(t, idp)
}

func TestCheckCommand(t *testing.T) {
	t.Parallel()
	path := checkConfig(t)
	code, out, errOut := runCmd(t, "check", "robot", "--config", path)
	if code != exitOK || errOut != "" {
		t.Fatalf("robot: exit %d, stderr %q\n%s", code, errOut, out)
	}
	for _, want := range []string{"xoauthd check: 1 account in " + path, "robot: identity robot@contoso.onmicrosoft.com, provider app",
		"  ✓ token   app-only token (client credentials) issued", "  – imap    skipped: no imap server", "Every step that ran passed."} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// billing has never signed in: the check fails with the fix, exit 1.
	code, out, _ = runCmd(t, "check", "--json", "billing", "--config", path)
	var r check.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != exitFailure || r.OK || r.Config != path ||
		len(r.Accounts) != 1 || r.Accounts[0].Steps[1].Name != "token" || r.Accounts[0].Steps[1].Problem == nil ||
		!strings.Contains(r.Accounts[0].Steps[1].Problem.Fix, "xoauthd login "+tokenTestUser) {
		t.Errorf("billing: exit %d, %v, report %+v", code, err, r)
	}
}

func TestCheckUsageErrors(t *testing.T) {
	t.Parallel()
	path := checkConfig(t)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("accounts: [{login: x}]\nbogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"check", "--config", path, "--bogus"}, "flag provided but not defined"},
		{"bad send-test address", []string{"check", "--config", path, "--send-test", "not an address"}, "not a plain e-mail address"},
		{"send-test with a name", []string{"check", "--config", path, "--send-test", "Bob <bob@contoso.test>"}, "not a plain e-mail address"},
		{"unknown login", []string{"check", "--config", path, "erp-nobody"}, `no account with login "erp-nobody"`},
		{"invalid configuration", []string{"check", "--config", bad}, "problem"},
		{"missing configuration", []string{"check", "--config", filepath.Join(t.TempDir(), "none.yaml")}, "reading configuration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runIn(t, "", tt.args...)
			if code != exitUsage || !strings.Contains(errOut, tt.want) || out != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want 2 and %q", code, out, errOut, tt.want)
			}
		})
	}
}

// TestCheckSelectsLogins checks only the named accounts, in the given order.
func TestCheckSelectsLogins(t *testing.T) {
	t.Parallel()
	path := checkConfig(t)
	report := func(args ...string) (int, check.Report) {
		code, out, errOut := runCmd(t, append([]string{"check", "--json", "--config", path}, args...)...)
		var r check.Report
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("exit %d, stdout is not a JSON report: %v\n%s\nstderr: %s", code, err, out, errOut)
		}
		return code, r
	}
	code, r := report("ROBOT")
	if code != exitOK || len(r.Accounts) != 1 || r.Accounts[0].Login != "robot" {
		t.Errorf("exit %d, accounts %+v", code, r.Accounts)
	}
	code, r = report("robot", "billing")
	if code != exitFailure || len(r.Accounts) != 2 || r.Accounts[0].Login != "robot" || !r.Accounts[0].OK ||
		r.Accounts[1].Login != "billing" || r.Accounts[1].OK {
		t.Errorf("robot and billing: exit %d, %+v", code, r.Accounts)
	}
	if code, r = report(); code != exitFailure || len(r.Accounts) != 5 {
		t.Errorf("all accounts: exit %d, %d accounts", code, len(r.Accounts))
	}
}
