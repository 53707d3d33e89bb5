//go:build !windows

package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// serveConfig is a configuration that serve can start without network
// access: one IMAP listener on a free loopback port.
const serveConfig = `providers:
  m365: {type: microsoft, client_id: 3f2a5d1c-8b7e-4c2a-9e61-0d4b7a9c5e21}
servers:
  - {protocol: imap, listen: "127.0.0.1:0"}
accounts:
  - login: erp
    password_hash: $argon2id$v=19$m=24576,t=2,p=1$CN+OY1B3VPKH6MoQedCaXg$wBVH52bUhlkgkOKHTHXGXk9L3zCoWdWBBag7EGay/t8
    identity: billing@contoso.com
`

// TestServeReloads runs serve and reloads its configuration with SIGHUP
// and by changing the file.
func TestServeReloads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "xoauthd.yaml")
	if err := os.WriteFile(path, []byte(serveConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startRun(t, "serve", "--config", path)
	out := srv.out
	waitOutput := func(what string, n int) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for strings.Count(out.String(), what) < n {
			if time.Now().After(deadline) {
				t.Fatalf("serve did not log %q %d times:\n%s", what, n, out.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitOutput("xoauthd started", 1)

	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitOutput("SIGHUP: reloading the configuration", 1)
	waitOutput("configuration reloaded", 1)
	if strings.Contains(out.String(), "restart xoauthd") {
		t.Errorf("an unchanged file asked for a restart:\n%s", out.String())
	}

	if err := os.WriteFile(path, []byte(serveConfig+"colour: blue\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitOutput("configuration problem", 1)
	if !strings.Contains(out.String(), "line=9") {
		t.Errorf("the problem's line is not logged:\n%s", out.String())
	}

	srv.stop(t)
}
