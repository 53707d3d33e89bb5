package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/xoauthd/xoauthd/internal/xoauth2"
)

// tokenRecorder is a reverse proxy in front of the identity provider that
// keeps every token its token endpoint hands out, so the test knows each
// access, refresh and id token that xoauthd ever held.
type tokenRecorder struct {
	url string
	mu  sync.Mutex
	got []string
}

// maxRecordedBody bounds a token response the recorder reads.
const maxRecordedBody = 1 << 20

func newTokenRecorder(t *testing.T, authority string) *tokenRecorder {
	t.Helper()
	target, err := url.Parse(authority)
	if err != nil {
		t.Fatal(err)
	}
	rec := &tokenRecorder{}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(resp *http.Response) error {
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxRecordedBody))
		resp.Body.Close()
		if err != nil {
			return err
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		var v struct {
			AccessToken  string `json:"access_token"`
			RefreshToken string `json:"refresh_token"`
			IDToken      string `json:"id_token"`
		}
		_ = json.Unmarshal(body, &v) // error bodies have no tokens
		rec.mu.Lock()
		for _, tok := range []string{v.AccessToken, v.RefreshToken, v.IDToken} {
			if tok != "" {
				rec.got = append(rec.got, tok)
			}
		}
		rec.mu.Unlock()
		return nil
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	rec.url = srv.URL
	return rec
}

func (rec *tokenRecorder) tokens() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]string(nil), rec.got...)
}

// TestSecretsNeverLogged runs a full scenario through xoauthd and Dovecot
// at debug level with the protocol trace on — logins of every form on
// IMAP, POP3 and SMTP, wrong passwords, mail sent and fetched, refreshes
// (access tokens live under the refresh margin, so refresh tokens rotate)
// — and then looks for every password, every token the identity provider
// issued, the client secret and the store key in all of xoauthd's output
// and in the token store file: raw, base64 and as XOAUTH2 strings. It
// expects 0 hits.
func TestSecretsNeverLogged(t *testing.T) {
	t.Parallel()
	const clientSecret = "e2e~Client.Secret-Value_9f8e7d6c5b4a3210"
	var rec *tokenRecorder
	r := newRigWith(t, rigOptions{
		logYAML:      "level: debug, trace: true",
		clientSecret: clientSecret,
		tokenURL: func(r *rig) string {
			if rec == nil {
				rec = newTokenRecorder(t, r.idp.Authority())
			}
			return rec.url + "/" + r.idp.Tenant() + "/oauth2/v2.0/token"
		},
	})
	// Access tokens with five minutes to live are under the daemon's
	// refresh margin: every login refreshes and rotates the refresh token.
	r.idp.SetAccessTokenLifetime(5 * time.Minute)
	r.login(alice)
	r.login(bob)

	msg := message("secrets", 3000)
	if err := r.dc.Deliver(alice, msg); err != nil {
		t.Fatal(err)
	}
	// IMAP: LOGIN (atoms, quoted, literal), AUTHENTICATE PLAIN and LOGIN,
	// a wrong password, a FETCH.
	plainA := b64("\x00" + aliceLogin + "\x00" + alicePass)
	for _, script := range [][]string{
		{"a LOGIN erp-alice \"local pw 1\"", "a OK", "b SELECT INBOX", "b OK", "c FETCH 1 BODY[]", "c OK"},
		{"a LOGIN {7}", "+", "erp-bob {10}", "+", bobPass, "a OK"},
		{"a AUTHENTICATE PLAIN " + plainA, "a OK"},
		{"a AUTHENTICATE PLAIN", "+", plainA, "a OK"},
		{"a LOGIN erp-bob \"wrong password 123\"", "a NO", "b AUTHENTICATE LOGIN", "+", b64(bobLogin), "+", b64(bobPass), "b OK"},
	} {
		runScript(t, r.imap, "* OK", script, "z LOGOUT", "z OK")
	}
	// POP3: USER/PASS, AUTH PLAIN both forms, AUTH LOGIN, RETR.
	for _, script := range [][]string{
		{"USER erp-alice", "+OK", "PASS " + alicePass, "+OK", "RETR 1", "+OK"},
		{"AUTH PLAIN " + b64("\x00"+bobLogin+"\x00"+bobPass), "+OK"},
		{"AUTH PLAIN", "+ ", plainA, "+OK"},
		{"AUTH LOGIN", "+ ", b64(bobLogin), "+ ", b64(bobPass), "+OK"},
		{"USER erp-bob", "+OK", "PASS wrong password 456", "-ERR"},
	} {
		runScript(t, r.pop3, "+OK", script, "QUIT", "+OK")
	}
	// SMTP: AUTH PLAIN and LOGIN, mail through to Dovecot's sink.
	for _, auth := range []sasl.Client{sasl.NewPlainClient("", aliceLogin, alicePass), sasl.NewLoginClient(bobLogin, bobPass)} {
		if err := sendViaXoauthd(t, r.smtp, auth, alice, []string{bob}, message("secret-mail", 2000)); err != nil {
			t.Fatalf("sending: %v", err)
		}
	}
	if _, err := r.dc.Sink.WaitFor(2, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := r.idp.Counts()["refresh_token"]; n < 5 {
		t.Errorf("%d refreshes during the scenario, want several", n)
	}
	if !strings.Contains(r.logs.String(), "msg=trace") {
		t.Error("log.trace did not turn the protocol trace on")
	}

	secrets := map[string]string{"client secret": clientSecret}
	key, err := os.ReadFile(r.cfg.Store.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	secrets["store key"] = strings.TrimSpace(string(key))
	for login, pw := range map[string]string{aliceLogin: alicePass, bobLogin: bobPass} {
		secrets[login+" password"] = pw
		secrets[login+" password, base64"] = b64(pw)
		secrets[login+" PLAIN response"] = b64("\x00" + login + "\x00" + pw)
		secrets[login+" password hash"] = r.cfg.Account(login).PasswordHash.Reveal()
	}
	toks := rec.tokens()
	if len(toks) < 10 {
		t.Fatalf("the recorder saw only %d tokens", len(toks))
	}
	for i, tok := range toks {
		secrets[fmt.Sprintf("token %d", i)] = tok
		for _, id := range []string{alice, bob} {
			secrets[fmt.Sprintf("token %d as XOAUTH2 for %s", i, id)] = xoauth2.Encode(id, tok)
		}
	}
	store, err := os.ReadFile(r.storePath())
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{"log": r.logs.String(), "token store": string(store)}
	hits := 0
	for what, out := range outputs {
		for name, s := range secrets {
			if name == "store key" && what == "token store" {
				continue
			}
			if p := secretPiece(s, out); p != "" {
				hits++
				t.Errorf("the %s holds the %s (%q)", what, name, p)
			}
		}
	}
	t.Logf("%d secrets (%d issued tokens) looked for in %d bytes of log and the %d-byte store: %d hits",
		len(secrets), len(toks), len(outputs["log"]), len(store), hits)
}

// secretWindow is the length of the pieces of a secret looked for: long
// enough not to match by chance, short enough to catch a cut secret.
const secretWindow = 16

// secretPiece returns the secret, or a piece of it of secretWindow bytes,
// that occurs in out; "" when none does.
func secretPiece(secret, out string) string {
	if strings.Contains(out, secret) {
		return secret
	}
	for i := 0; i+secretWindow <= len(secret); i += secretWindow / 2 {
		if p := secret[i : i+secretWindow]; strings.Contains(out, p) {
			return p
		}
	}
	return ""
}

// runScript connects to addr, expects greeting, then sends each even
// element of script and expects the reply (by prefix) in the next one;
// it ends with bye and its reply.
func runScript(t *testing.T, addr, greeting string, script []string, bye, byeReply string) {
	t.Helper()
	w := dialWireE2E(t, addr)
	w.expect(greeting)
	for i := 0; i+1 < len(script); i += 2 {
		w.send(script[i])
		w.expect(script[i+1])
	}
	w.send(bye)
	w.expect(byeReply)
}

// wireE2E is a line-based client for scripted sessions.
type wireE2E struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

// maxScriptLines bounds the lines read while waiting for one reply.
const maxScriptLines = 10000

func dialWireE2E(t *testing.T, addr string) *wireE2E {
	t.Helper()
	c, err := dialFrom(addr, sourceAddr(honestNet, 70))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	return &wireE2E{t: t, c: c, br: bufio.NewReader(c)}
}

func (w *wireE2E) send(line string) {
	w.t.Helper()
	if _, err := io.WriteString(w.c, line+"\r\n"); err != nil {
		w.t.Fatalf("sending %q: %v", line, err)
	}
}

// expect reads lines until one starts with prefix.
func (w *wireE2E) expect(prefix string) {
	w.t.Helper()
	for range maxScriptLines {
		l, err := w.br.ReadString('\n')
		if err != nil {
			w.t.Fatalf("waiting for %q: %v", prefix, err)
		}
		if strings.HasPrefix(l, prefix) {
			return
		}
	}
	w.t.Fatalf("no %q within %d lines", prefix, maxScriptLines)
}
