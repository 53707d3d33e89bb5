package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/xoauthd/xoauthd/internal/passhash"
)

// runIn runs the command line in-process with stdin as standard input.
func runIn(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"-help"}} {
		code, out, errOut := runIn(t, "", args...)
		if code != exitOK || errOut != "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
		for _, c := range commands {
			if !strings.Contains(out, "\n  "+c.name+" ") || !strings.Contains(out, c.summary) {
				t.Errorf("%v: help does not list %s:\n%s", args, c.name, out)
			}
		}
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // on stderr
	}{
		{"no command", nil, "Commands:"},
		{"unknown command", []string{"serv"}, `unknown command "serv"`},
		{"unknown flag", []string{"validate", "--bogus"}, "flag provided but not defined: -bogus"},
		{"unexpected argument", []string{"validate", "extra.yaml"}, `unexpected argument "extra.yaml"`},
		{"version with argument", []string{"version", "now"}, `unexpected argument "now"`},
		{"hash-password with argument", []string{"hash-password", "secret"}, `unexpected argument "secret"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runIn(t, "", tt.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if !strings.Contains(errOut, tt.want) || !strings.Contains(errOut, "Usage") {
				t.Errorf("stderr = %q, want %q and the usage", errOut, tt.want)
			}
			if out != "" {
				t.Errorf("stdout = %q, want nothing", out)
			}
		})
	}
}

func TestCommandHelp(t *testing.T) {
	for _, c := range commands {
		for _, args := range [][]string{{c.name, "--help"}, {c.name, "-h"}, {"help", c.name}} {
			code, out, _ := runIn(t, "", args...)
			if code != exitOK || !strings.Contains(out, "Usage: xoauthd "+c.name) || !strings.Contains(out, c.summary) {
				t.Errorf("%v: exit %d, stdout %q", args, code, out)
			}
		}
	}
	if _, out, _ := runIn(t, "", "validate", "--help"); !strings.Contains(out, "-config FILE") {
		t.Errorf("validate --help does not show --config:\n%s", out)
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, out, _ := runIn(t, "", args...)
		if code != exitOK || !strings.HasPrefix(out, "xoauthd ") || !strings.Contains(out, runtime.Version()) || !strings.Contains(out, "commit ") {
			t.Errorf("%v: exit %d, %q", args, code, out)
		}
	}
}

func TestValidateExample(t *testing.T) {
	t.Setenv("M365_CLIENT_SECRET", "test-secret-value")
	code, out, errOut := runIn(t, "", "validate", "--config", "../../config.example.yaml")
	if code != exitOK || !strings.HasPrefix(out, "ok: 2 accounts, 3 servers in ") || errOut != "" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestValidateThreeMistakes(t *testing.T) {
	code, out, errOut := runIn(t, "", "validate", "--config", "../../config/testdata/three-mistakes.yaml")
	want := []string{
		"three-mistakes.yaml: 3 problems",
		`  providers.m365.clientsecret (line 9): unknown key "clientsecret"; did you mean "client_secret"?`,
		`  servers[0].protocol (line 11): unknown protocol "imap4"; known: imap, pop3, smtp`,
		`  accounts[0].provider (line 17): unknown provider "m356"; known: m365`,
	}
	if code != exitFailure || out != "" {
		t.Errorf("exit %d, stdout %q", code, out)
	}
	for _, w := range want {
		if !strings.Contains(errOut, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errOut)
		}
	}
}

func TestValidateConfigFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "xoauthd.yaml")
	src := "servers:\n  - {protocol: smtp, listen: \"127.0.0.1:1587\", upstream: \"smtp.office365.com:587\"}\n"
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XOAUTHD_CONFIG", path)
	code, out, errOut := runIn(t, "", "validate")
	if code != exitOK || out != "ok: 0 accounts, 1 server in "+path+"\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestValidateWarnsLegacyTLS: a listener that accepts TLS 1.0 loads, and
// validate says ok with a warning that names the line.
func TestValidateWarnsLegacyTLS(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "xoauthd.yaml")
	src := "servers:\n  - protocol: smtp\n    listen: \"127.0.0.1:1587\"\n    upstream: \"smtp.office365.com:587\"\n" +
		"    tls: {self_signed: mail.test, min_version: \"1.0\"}\n"
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runIn(t, "", "validate", "--config", path)
	if code != exitOK || !strings.HasPrefix(out, "ok: ") ||
		!strings.Contains(errOut, "warning: servers[0].tls.min_version (line 5): 127.0.0.1:1587 accepts TLS 1.0") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestValidateMissingFile(t *testing.T) {
	code, _, errOut := runIn(t, "", "validate", "--config", filepath.Join(t.TempDir(), "none.yaml"))
	if code != exitFailure || !strings.Contains(errOut, "xoauthd validate: reading configuration") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestHashPassword(t *testing.T) {
	tests := []struct {
		name, stdin, password string
	}{
		{"line", "change-me\n", "change-me"},
		{"crlf", "change-me\r\n", "change-me"},
		{"no newline", "change-me", "change-me"},
		{"only first line", "first\nsecond\n", "first"},
		{"spaces kept", " a b \n", " a b "},
		{"longest", strings.Repeat("p", maxPasswordLen) + "\n", strings.Repeat("p", maxPasswordLen)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runIn(t, tt.stdin, "hash-password")
			if code != exitOK || errOut != "" {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			phc := strings.TrimSuffix(out, "\n")
			if ok, err := passhash.Verify(phc, tt.password); !ok || err != nil {
				t.Errorf("Verify(%q) = %v, %v", phc, ok, err)
			}
			if strings.Contains(out, tt.password) {
				t.Errorf("output contains the password: %q", out)
			}
		})
	}
}

func TestHashPasswordRefuses(t *testing.T) {
	for name, stdin := range map[string]string{
		"empty input":  "",
		"empty line":   "\n",
		"crlf only":    "\r\n",
		"too long":     strings.Repeat("p", maxPasswordLen+1) + "\n",
		"endless line": strings.Repeat("p", 10*maxPasswordLen),
	} {
		t.Run(name, func(t *testing.T) {
			code, out, errOut := runIn(t, stdin, "hash-password")
			if code != exitFailure || out != "" || !strings.HasPrefix(errOut, "xoauthd hash-password: ") {
				t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
			}
		})
	}
}

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		args []string
		pos  []string
		dev  bool
	}{
		{[]string{"alice@contoso.com", "--device"}, []string{"alice@contoso.com"}, true},
		{[]string{"--device", "alice@contoso.com", "bob"}, []string{"alice@contoso.com", "bob"}, true},
		{[]string{"a", "--", "--device"}, []string{"a", "--device"}, false},
		{nil, nil, false},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		inv := &invocation{cmd: &command{name: "login", summary: "s"}, args: tt.args, stdout: &out, stderr: &errOut}
		fs := inv.flagSet("IDENTITY [--device]")
		dev := fs.Bool("device", false, "use the device flow")
		pos, code, ok := inv.parse(fs)
		if !ok || code != exitOK || !slices.Equal(pos, tt.pos) || *dev != tt.dev {
			t.Errorf("parse(%q) = %q, %d, %v, device %v", tt.args, pos, code, ok, *dev)
		}
	}
}

// TestCommandNamesUnique guards the table against a duplicate entry.
func TestCommandNamesUnique(t *testing.T) {
	seen := map[string]bool{"help": true}
	for _, c := range commands {
		if seen[c.name] || c.summary == "" || c.run == nil {
			t.Errorf("bad command entry %q", c.name)
		}
		seen[c.name] = true
	}
}

// TestValidateWarnsOfWideNoAuth: a valid configuration whose no_auth lets
// every address send is accepted, with a warning naming the line.
func TestValidateWarnsOfWideNoAuth(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "xoauthd.yaml")
	src := `store: {key: "${file:store.key}"}
providers:
  m365: {type: microsoft, client_id: 3f2a5d1c-8b7e-4c2a-9e61-0d4b7a9c5e21}
servers:
  - protocol: smtp
    listen: 127.0.0.1:2525
    upstream: smtp.office365.com:587
    no_auth: {account: scanner, from: [127.0.0.1, 0.0.0.0/0]}
accounts:
  - {login: scanner, password_hash: "$argon2id$v=19$m=24576,t=2,p=1$CN+OY1B3VPKH6MoQedCaXg$wBVH52bUhlkgkOKHTHXGXk9L3zCoWdWBBag7EGay/t8", identity: scans@contoso.com, provider: m365}
`
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runIn(t, "", "validate", "--config", path)
	want := `warning: servers[0].no_auth.from[1] (line 8): "0.0.0.0/0" admits every address: anyone there may send mail as scanner without a password`
	if code != exitOK || !strings.HasPrefix(out, "ok: 1 account, 1 server") || !strings.HasPrefix(errOut, want) || strings.Count(errOut, "\n") != 1 {
		t.Errorf("exit %d, stdout %q, stderr %q; want the warning %q", code, out, errOut, want)
	}
}
