package daemon

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/xoauthd/xoauthd/internal/passhash"
	"github.com/xoauthd/xoauthd/proxy"
)

// TestConsoleOnTheAdminEndpoint: with admin.password_hash the admin
// endpoint serves the console at / behind the password while the probes
// and /metrics stay open, and the console shows a failed IMAP login of an
// account (the daemon's log feeds it); without it, / says how to turn the
// console on.
func TestConsoleOnTheAdminEndpoint(t *testing.T) {
	off := newOpsRig(t, opsRigOptions{tokens: opsTokens{}, accounts: []opsAccount{opsAlice},
		creds: proxy.CredentialOptions{Verify: opsVerify, BaseDelay: -1, CacheTTL: -1}})
	if code, body := off.get("/"); code != http.StatusNotFound || !strings.Contains(body, "console is off") {
		t.Fatalf("/ without admin.password_hash: %d %q", code, body)
	}

	hash, err := passhash.Hash("console pw")
	if err != nil {
		t.Fatal(err)
	}
	r := newOpsRig(t, opsRigOptions{tokens: opsTokens{}, accounts: []opsAccount{opsAlice}, console: hash,
		creds: proxy.CredentialOptions{Verify: opsVerify, BaseDelay: -1, CacheTTL: -1}})
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, _ := r.get(p); code != http.StatusOK {
			t.Errorf("%s = %d without a console session", p, code)
		}
	}
	w := dialWire(t, r.imap)
	w.cmd("a LOGIN erp-alice wrong", "a NO [AUTHENTICATIONFAILED]")
	w.closeAndDrain()

	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: opsTimeout}
	read := func(resp *http.Response, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	signin := read(client.Get(r.admin + "/"))
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(signin)
	if m == nil {
		t.Fatalf("/ does not lead to the sign-in form:\n%s", signin)
	}
	home := read(client.PostForm(r.admin+"/signin", url.Values{"csrf": {m[1]}, "password": {"console pw"}}))
	for _, want := range []string{"erp-alice", "Recent failed logins (1)", "imap: bad local credentials"} {
		if !strings.Contains(home, want) {
			t.Errorf("the accounts page lacks %q:\n%s", want, home)
		}
	}
	if !strings.Contains(r.logs.String(), "console on: open it as http://localhost:") {
		t.Error("serve does not say where the console is")
	}
}
