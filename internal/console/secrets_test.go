package console

import (
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/testkit"
)

// TestNoSecretAnywhere drives the whole console (a wrong password, sign-in,
// Connect, the device code, Test all against Dovecot with the report, an
// account page, Sign out of an identity, sign-out) and looks for every
// secret in every URL, header and body the browser saw and in every log
// line: the tokens the identity provider issued, the client secret, the
// console password and its hash, the accounts' password hashes, the store
// key.
func TestNoSecretAnywhere(t *testing.T) {
	r := newRig(t, rigOptions{dovecot: true})
	b := r.browser()
	page := b.get("/signin")
	b.post("/signin", url.Values{"csrf": {csrf(t, page.body)}, "password": {consolePass + "x"}})
	token := b.signIn()
	b.comeBack(r.authorize(b.connect(token, alice)))
	a := b.post("/identity/device", url.Values{"csrf": {token}, "identity": {bob}, "provider": {"test"}})
	dev := b.get(a.location)
	code := regexpCode.FindStringSubmatch(dev.body)
	if code == nil {
		t.Fatalf("device page:\n%s", dev.body)
	}
	if err := r.idp.ApproveDevice(code[1], bob); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Minute, "the device sign-in", func() bool { return strings.Contains(b.get(a.location).body, "Signed in as "+bob) })
	loc, _ := b.runTest(url.Values{"csrf": {token}, "all": {"1"}})
	rep := b.report(loc)
	if !rep.Accounts[0].OK || !rep.Accounts[1].OK {
		t.Fatalf("alice and bob should pass: %+v", rep)
	}
	b.get("/account/" + aliceLogin)
	b.get("/")
	b.post("/identity/signout", url.Values{"csrf": {token}, "identity": {alice}, "provider": {"test"}})
	b.get("/")
	b.post("/signout", url.Values{"csrf": {token}})

	secrets := map[string]string{
		"console password":      consolePass,
		"console password hash": r.hash,
		"client secret":         appSecret,
	}
	for i, h := range regexp.MustCompile(`password_hash: "([^"]+)"`).FindAllStringSubmatch(r.yaml(true), -1) {
		secrets["password hash "+string(rune('0'+i))] = h[1]
	}
	cfg := r.config()
	for _, acct := range cfg.Accounts {
		secrets["password hash of "+acct.Login] = acct.PasswordHash.Reveal()
	}
	key, err := os.ReadFile(cfg.Store.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	secrets["store key"] = strings.TrimSpace(string(key))
	toks := r.rec.Tokens()
	if len(toks) < 6 {
		t.Fatalf("only %d tokens were issued", len(toks))
	}
	for i, tok := range toks {
		secrets["token "+string(rune('a'+i))] = tok
	}
	for what, out := range map[string]string{"browser": b.seen.String(), "log": r.logs.String()} {
		for name, s := range secrets {
			if piece, ok := testkit.Leaked(out, s); ok {
				t.Errorf("the %s holds the %s (%q)", what, name, piece)
			}
		}
	}
}
