package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/config"
)

// TestServeTraceAndAdmin runs serve --trace with an admin endpoint: the
// endpoint answers, and the IMAP greeting shows in the protocol trace even
// though log.level is info.
func TestServeTraceAndAdmin(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "xoauthd.yaml")
	conf := fmt.Sprintf(`log: {level: info}
admin: {listen: "127.0.0.1:0"}
store:
  path: %[1]s/tokens.json
  key: ${file:%[1]s/store.key}
providers:
  m365: {type: microsoft, client_id: 3f2a5d1c-8b7e-4c2a-9e61-0d4b7a9c5e21}
servers:
  - {protocol: imap, listen: "127.0.0.1:0"}
accounts:
  - login: erp
    password_hash: $argon2id$v=19$m=24576,t=2,p=1$CN+OY1B3VPKH6MoQedCaXg$wBVH52bUhlkgkOKHTHXGXk9L3zCoWdWBBag7EGay/t8
    identity: billing@contoso.com
`, dir)
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startRun(t, "serve", "--trace", "--config", path)
	out := srv.out
	waitFor := func(re *regexp.Regexp) string {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			if m := re.FindStringSubmatch(out.String()); m != nil {
				return m[len(m)-1]
			}
			if time.Now().After(deadline) {
				t.Fatalf("serve did not log %s:\n%s", re, out.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(regexp.MustCompile(`xoauthd started`))
	if !strings.Contains(out.String(), "protocol trace on") {
		t.Errorf("no warning that the trace is on:\n%s", out.String())
	}
	adminAddr := waitFor(regexp.MustCompile(`"admin endpoint listening" addr=(\S+)`))
	imapAddr := waitFor(regexp.MustCompile(`listening proto=imap addr=(\S+)`))

	client := &http.Client{Timeout: 10 * time.Second}
	for _, tt := range []struct{ path, want string }{
		{"/healthz", "ok"},
		{"/readyz", "ready\nnote: identity billing@contoso.com is not logged in: run xoauthd login billing@contoso.com"},
		{"/metrics", `xoauthd_identity_needs_login{identity="billing@contoso.com"} 1`},
	} {
		resp, err := client.Get("http://" + adminAddr + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), tt.want) {
			t.Errorf("%s = %d %q, want 200 with %q", tt.path, resp.StatusCode, body, tt.want)
		}
	}

	c, err := net.Dial("tcp", imapAddr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "a LOGOUT\r\n")
	io.Copy(io.Discard, c)
	c.Close()
	waitFor(regexp.MustCompile(`level=DEBUG msg=trace .*peer=client dir=in line="a LOGOUT"`))

	srv.stop(t)
}

func TestNewLoggerTraceLowersLevel(t *testing.T) {
	tests := []struct {
		log       config.Log
		wantDebug bool
	}{
		{config.Log{Level: "info"}, false},
		{config.Log{Level: "info", Trace: true}, true},
		{config.Log{Level: "error", Trace: true}, true},
		{config.Log{Level: "debug"}, true},
	}
	for _, tt := range tests {
		log := newLogger(tt.log, io.Discard)
		if got := log.Enabled(context.Background(), slog.LevelDebug); got != tt.wantDebug {
			t.Errorf("newLogger(%+v): debug enabled = %v, want %v", tt.log, got, tt.wantDebug)
		}
	}
}
