package daemon

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/passhash"
	"github.com/xoauthd/xoauthd/internal/testidp"
	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/internal/testsignin"
	"github.com/xoauthd/xoauthd/internal/xoauth2"
)

// opsClientID is the test app registration.
const opsClientID = "5b7e0c8d-2f41-4e6a-8c3b-9a1d2e3f4a5b"

// opsIdP is a test identity provider behind a recording reverse proxy: the
// configuration's authority is the proxy, which keeps every token the
// token endpoint hands out, so a test can look for them in the log.
type opsIdP struct {
	idp    *testidp.IdP
	rec    *testidp.Recorder
	url    string // the proxy's base URL
	secret string // the client secret; "" for a public client
}

// newOpsIdP starts the IdP and its proxy. lifetime is the access tokens'
// lifetime (0: the IdP's default).
func newOpsIdP(t *testing.T, lifetime time.Duration) *opsIdP {
	t.Helper()
	idp, err := testidp.Start(testidp.Options{AccessTokenLifetime: lifetime})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	p := &opsIdP{idp: idp, rec: testidp.NewRecorder(t, idp)}
	p.url = p.rec.URL
	return p
}

func (p *opsIdP) tokens() []string { return p.rec.Tokens() }

// providerYAML registers the app (confidential when secret is set) and
// returns the provider entry for it.
func (p *opsIdP) providerYAML(secret string) string {
	p.secret = secret
	p.idp.AddClient(testidp.Client{ID: opsClientID, Secret: secret, Public: secret == ""})
	s := fmt.Sprintf("{type: microsoft, tenant: %s, client_id: %s, flow: authcode, authority: %q", p.idp.Tenant(), opsClientID, p.url)
	if secret != "" {
		s += fmt.Sprintf(", client_secret: %q", secret)
	}
	return s + "}"
}

// login signs identity in as `xoauthd login` would, from a store of its own
// over the daemon's file; the IdP plays the browser.
func (p *opsIdP) login(t *testing.T, r *opsRig, identity string) {
	t.Helper()
	p.idp.AddUser(identity)
	cfg := r.d.Config()
	ctx, cancel := context.WithTimeout(context.Background(), 3*opsTimeout)
	defer cancel()
	// The authorize URL names the proxy; the IdP answers for itself.
	if err := testsignin.SignIn(ctx, cfg, "test", identity, p.rec.Authorize); err != nil {
		t.Fatal(err)
	}
}

// TestNoSecretInTheMostVerboseLog runs logins of every form and a mail
// exchange over IMAP and POP3 with log level debug and the protocol trace
// on, with real tokens from an identity provider (a confidential client;
// access tokens short enough that every login refreshes, so refresh tokens
// rotate; an upstream that rejects and expires tokens now and then), and
// asserts that no password, access token, refresh token, id token, client
// secret or store key appears in the log, raw or in the base64 forms the
// protocols carry them in, nor in /metrics and /readyz.
func TestNoSecretInTheMostVerboseLog(t *testing.T) {
	const clientSecret = "Cl1ent~Secret.Value-0123456789abcdefXYZ"
	bob := opsAccount{login: "erp-bob", password: "Bob's p@ss w0rd", identity: "bob@contoso.test"}
	alice := opsAccount{login: "erp-alice", password: "Alice-Local-Secret-77", identity: "alice@contoso.test"}
	accounts := []opsAccount{alice, bob}
	for i := range accounts {
		h, err := passhash.Hash(accounts[i].password)
		if err != nil {
			t.Fatal(err)
		}
		accounts[i].hash = h
	}
	idp := newOpsIdP(t, 5*time.Minute) // under the manager's margin: every login refreshes
	var issued atomic.Pointer[[]string]
	var reject atomic.Int32 // the next n XOAUTH2 logins are rejected with the error challenge
	validate := func(user, token string) error {
		if reject.Add(-1) >= 0 {
			return fmt.Errorf("token rejected for the test")
		}
		for _, tok := range *issued.Load() {
			if tok == token {
				return nil
			}
		}
		return fmt.Errorf("token for %s was not issued by the identity provider", user)
	}
	issued.Store(&[]string{})
	r := newOpsRig(t, opsRigOptions{
		accounts: accounts,
		provider: idp.providerYAML(clientSecret),
		log:      "{level: debug, format: text, trace: true}",
		validate: func(user, token string) error {
			toks := idp.tokens()
			issued.Store(&toks)
			return validate(user, token)
		},
	})
	if !r.d.ops.trace {
		t.Fatal("log.trace did not turn the trace on")
	}
	for _, a := range accounts {
		idp.login(t, r, a.identity)
	}
	msg := "Subject: quarterly figures\r\n\r\nsee attachment\r\n"
	for _, a := range accounts {
		if err := r.mem.Append(a.identity, "INBOX", []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

	imapSessions := []func(w *wire){
		func(w *wire) { // LOGIN with quoted strings, fetch
			w.cmd(`a LOGIN erp-alice "Alice-Local-Secret-77"`, "a OK")
			w.cmd("b SELECT INBOX", "b OK")
			w.cmd("c FETCH 1 BODY[]", "c OK")
		},
		func(w *wire) { // LOGIN with literals, append
			w.cmd("a LOGIN {7}", "+")
			w.cmd("erp-bob {15}", "+")
			w.cmd(bob.password, "a OK")
			w.cmd("b APPEND INBOX {"+fmt.Sprint(len(msg))+"+}\r\n"+msg, "b OK")
		},
		func(w *wire) { // AUTHENTICATE PLAIN with an initial response
			w.cmd("a AUTHENTICATE PLAIN "+b64("\x00erp-alice\x00"+alice.password), "a OK")
		},
		func(w *wire) { // AUTHENTICATE LOGIN, after a wrong password
			w.cmd(`a LOGIN erp-bob "not the password"`, "a NO")
			w.cmd("b AUTHENTICATE LOGIN", "+")
			w.cmd(b64("erp-bob"), "+")
			w.cmd(b64(bob.password), "b OK")
		},
		func(w *wire) { // the upstream rejects the first token: error challenge, refresh, retry
			reject.Store(1)
			w.cmd(`a LOGIN erp-alice "Alice-Local-Secret-77"`, "a OK")
		},
	}
	for _, s := range imapSessions {
		w := dialWire(t, r.imap)
		s(w)
		w.cmd("z LOGOUT", "z OK")
		w.closeAndDrain()
	}
	popSessions := []func(w *wire){
		func(w *wire) {
			w.cmd("USER erp-alice", "+OK")
			w.cmd("PASS "+alice.password, "+OK")
			w.cmd("RETR 1", "+OK")
			w.until(".")
		},
		func(w *wire) {
			w.cmd("AUTH PLAIN "+b64("\x00erp-bob\x00"+bob.password), "+OK")
			w.cmd("LIST", "+OK")
			w.until(".")
		},
		func(w *wire) {
			w.cmd("AUTH LOGIN", "+ ")
			w.cmd(b64("erp-alice"), "+ ")
			w.cmd(b64(alice.password), "+OK")
		},
		func(w *wire) {
			reject.Store(1)
			w.cmd("AUTH PLAIN", "+ ")
			w.cmd(b64("\x00erp-bob\x00"+bob.password), "+OK")
		},
	}
	for _, s := range popSessions {
		w := dialWire(t, r.pop)
		s(w)
		w.cmd("QUIT", "+OK")
		w.closeAndDrain()
	}
	_, metricsBody := r.get("/metrics")
	_, readyBody := r.get("/readyz")
	r.stop() // every session has ended and logged

	logs := r.logs.String()
	// The test ran what it claims: logins succeeded, tokens were
	// refreshed, and the trace saw both sides.
	if got := len(regexp.MustCompile(`(?m)msg=login .*result=success`).FindAllString(logs, -1)); got != len(imapSessions)+len(popSessions) {
		t.Errorf("%d successful logins in the log, want %d", got, len(imapSessions)+len(popSessions))
	}
	if n := idp.idp.Counts()["refresh_token"]; n < len(imapSessions) {
		t.Errorf("%d refreshes, want one per login at least", n)
	}
	for _, want := range []string{`peer=client dir=in line="a LOGIN ***"`, `line="PASS ***"`,
		`peer=upstream dir=out line="a AUTHENTICATE XOAUTH2 ***"`, `peer=upstream dir=out line="AUTH XOAUTH2"`,
		`peer=upstream dir=in line="+ ***"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("the trace lacks %s", want)
		}
	}

	key, err := os.ReadFile(filepath.Join(r.dir, "store.key"))
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{"client secret": clientSecret, "store key": strings.TrimSpace(string(key))}
	for _, a := range accounts {
		secrets[a.login+" password"] = a.password
		secrets[a.login+" password, base64"] = b64(a.password)
		secrets[a.login+" PLAIN response"] = b64("\x00" + a.login + "\x00" + a.password)
		secrets[a.login+" password hash"] = a.hash
	}
	toks := idp.tokens()
	if len(toks) < 3*len(accounts) {
		t.Fatalf("only %d tokens were issued", len(toks))
	}
	for i, tok := range toks {
		secrets[fmt.Sprintf("token %d", i)] = tok
		for _, a := range accounts {
			secrets[fmt.Sprintf("token %d as XOAUTH2 for %s", i, a.identity)] = xoauth2.Encode(a.identity, tok)
		}
	}
	for what, out := range map[string]string{"log": logs, "/metrics": metricsBody, "/readyz": readyBody} {
		for name, s := range secrets {
			if piece, ok := testkit.Leaked(out, s); ok {
				t.Errorf("the %s holds the %s (%q)", what, name, piece)
			}
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", logs)
	}
}
