package daemon

import (
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/memupstream"
	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/proxy"
)

// policyAccount is one account of a policyRig.
type policyAccount struct{ login, password, identity, mailbox string }

// policyRigOptions shape a policyRig.
type policyRigOptions struct {
	tokens   proxy.TokenSource // the daemon's token source (wrapped by its adapter like any other)
	creds    proxy.CredentialOptions
	maxPer   int // max_upstream_per_identity of every server
	accounts []policyAccount
	reject   map[string]bool // XOAUTH2 users (mailboxes) whose tokens the upstream refuses
}

// policyRig is a daemon with two IMAP listeners, a POP3 and an SMTP
// listener in front of the in-memory upstream (IMAP, POP3 and SMTP), which
// counts the XOAUTH2 logins it accepts per user.
type policyRig struct {
	*opsRig
	imap2, smtp string
	pop         *memupstream.POP3
	sub         *memupstream.SMTP

	mu     sync.Mutex
	logins map[string]int // accepted upstream logins per XOAUTH2 user
}

func newPolicyRig(t *testing.T, o policyRigOptions) *policyRig {
	t.Helper()
	r := &policyRig{opsRig: &opsRig{t: t, dir: t.TempDir(), logs: &testkit.SyncBuffer{}}, logins: map[string]int{}}
	r.mem = memupstream.MustStart(t, memupstream.Options{Validate: func(user, token string) error {
		if o.reject[user] || !strings.HasPrefix(token, "tok-") {
			return fmt.Errorf("token refused for %s", user)
		}
		r.mu.Lock()
		r.logins[user]++
		r.mu.Unlock()
		return nil
	}})
	var err error
	if r.pop, err = r.mem.StartPOP3(memupstream.POP3Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.pop.Close() })
	if r.sub, err = r.mem.StartSMTP(memupstream.SMTPOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.sub.Close() })
	addrs := make([]string, 4)
	for i := range addrs {
		addrs[i] = testkit.FreeAddr(t)
	}
	r.imap, r.imap2, r.opsRig.pop, r.smtp = addrs[0], addrs[1], addrs[2], addrs[3]
	var b strings.Builder
	fmt.Fprintf(&b, "log: {level: debug}\nadmin: {listen: \"127.0.0.1:0\"}\n")
	fmt.Fprintf(&b, "store:\n  path: %[1]s/tokens.json\n  key: ${file:%[1]s/store.key}\n", r.dir)
	b.WriteString("providers:\n  test: {type: microsoft, client_id: 3f2a5d1c-8b7e-4c2a-9e61-0d4b7a9c5e21}\nservers:\n")
	server := func(proto, listen, upstream, extra string) {
		fmt.Fprintf(&b, "  - {protocol: %s, listen: %q, upstream: %q, ca_file: %q, max_upstream_per_identity: %d%s}\n",
			proto, listen, upstream, r.mem.CAFile(), o.maxPer, extra)
	}
	server("imap", r.imap, r.mem.Addr(), "")
	server("imap", r.imap2, r.mem.Addr(), "")
	server("pop3", r.opsRig.pop, r.pop.Addr(), "")
	server("smtp", r.smtp, r.sub.Addr(), ", upstream_tls: starttls")
	b.WriteString("accounts:\n")
	for _, a := range o.accounts {
		r.mem.AddUser(a.identity)
		r.mem.AddUser(a.mailbox)
		fmt.Fprintf(&b, "  - {login: %s, password_hash: %q, identity: %s, mailbox: %s, provider: test}\n",
			a.login, opsHash(a.password), a.identity, a.mailbox)
	}
	creds := o.creds
	creds.Verify = opsVerify
	r.start(b.String(), Options{Tokens: o.tokens, Credentials: creds, smtpUpstreamWait: 50 * time.Millisecond})
	return r
}

// upstreamLogins returns the XOAUTH2 logins the upstream accepted for user.
func (r *policyRig) upstreamLogins(user string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.logins[user]
}

// loginIMAP logs in on a new connection and returns the tagged reply and
// the connection (open when the login succeeded).
func loginIMAP(t *testing.T, addr string, a policyAccount) (string, *wire) {
	w := dialWire(t, addr)
	return w.cmd(fmt.Sprintf("a LOGIN %s %q", a.login, a.password), "a "), w
}

// loginPOP3 logs in with USER and PASS on a new connection.
func loginPOP3(t *testing.T, addr string, a policyAccount) (string, *wire) {
	w := dialWire(t, addr)
	w.cmd("USER "+a.login, "+OK")
	w.send("PASS " + a.password)
	return w.line(), w
}

// loginSMTP logs in with AUTH PLAIN on a new connection.
func loginSMTP(t *testing.T, addr string, a policyAccount) (string, *wire) {
	w := dialWire(t, addr)
	w.cmd("EHLO client.test", "250 ")
	w.send("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+a.login+"\x00"+a.password)))
	return w.line(), w
}

// TestMaxUpstreamPerIdentity checks max_upstream_per_identity on IMAP and
// POP3: with 3, three logins of one identity (through different local
// logins and mailboxes, and on two IMAP listeners) open three upstream
// sessions; a fourth is refused at once with NO [LIMIT] / -ERR [IN-USE]
// and opens no upstream connection; when a session ends, the next login
// gets its place. Before the fix the daemon never passed the setting to
// imapfront and pop3front, and the fourth login opened a fourth session.
func TestMaxUpstreamPerIdentity(t *testing.T) {
	const identity = "shared@contoso.test"
	var accts []policyAccount
	for i := range 5 {
		accts = append(accts, policyAccount{fmt.Sprintf("erp%d", i), fmt.Sprintf("pw %d", i), identity, fmt.Sprintf("box%d@contoso.test", i)})
	}
	other := policyAccount{"other", "other pw", "other@contoso.test", "other@contoso.test"}
	r := newPolicyRig(t, policyRigOptions{tokens: opsTokens{}, maxPer: 3, accounts: append(accts, other)})
	opened := func() int {
		n := 0
		for _, a := range accts {
			n += r.upstreamLogins(a.mailbox)
		}
		return n
	}
	for _, tc := range []struct {
		proto     string
		addrs     []string // the listeners, used in turn
		login     func(*testing.T, string, policyAccount) (string, *wire)
		ok, limit string
	}{
		{"imap", []string{r.imap, r.imap2}, loginIMAP, "a OK",
			"a NO [LIMIT] Too many sessions for this account, try again when one has ended."},
		{"pop3", []string{r.opsRig.pop}, loginPOP3, "+OK",
			"-ERR [IN-USE] Too many sessions for this account, try again when one has ended."},
	} {
		t.Run(tc.proto, func(t *testing.T) {
			before := opened()
			var held []*wire
			for i := range 3 {
				reply, w := tc.login(t, tc.addrs[i%len(tc.addrs)], accts[i])
				if !strings.HasPrefix(reply, tc.ok) {
					t.Fatalf("login %d: %q", i+1, reply)
				}
				held = append(held, w)
			}
			if n := opened() - before; n != 3 {
				t.Fatalf("%d upstream sessions for three logins", n)
			}
			// The fourth, on any listener of the protocol, is refused before dialling.
			for _, addr := range tc.addrs {
				if reply, _ := tc.login(t, addr, accts[3]); reply != tc.limit {
					t.Errorf("fourth login on %s: %q, want %q", addr, reply, tc.limit)
				}
			}
			if n := opened() - before; n != 3 {
				t.Errorf("%d upstream sessions after the refused logins, want 3", n)
			}
			if v := r.metric(`xoauthd_logins_identity_limited_total{protocol="` + tc.proto + `"}`); v != float64(len(tc.addrs)) {
				t.Errorf("identity-limited logins counted: %v, want %d", v, len(tc.addrs))
			}
			if v := r.metric(`xoauthd_upstream_dial_duration_seconds_count{protocol="` + tc.proto + `"}`); v != 3 {
				t.Errorf("upstream dials: %v, want 3", v)
			}
			// Another identity is not affected.
			reply, w := tc.login(t, tc.addrs[0], other)
			if !strings.HasPrefix(reply, tc.ok) {
				t.Errorf("login of another identity: %q", reply)
			}
			w.closeAndDrain()
			// A session ends: its place goes to the next login.
			held[0].closeAndDrain()
			deadline := time.Now().Add(opsTimeout)
			for {
				reply, w := tc.login(t, tc.addrs[0], accts[4])
				if strings.HasPrefix(reply, tc.ok) {
					held[0] = w
					break
				}
				if reply != tc.limit || time.Now().After(deadline) {
					t.Fatalf("login after a session ended: %q", reply)
				}
				time.Sleep(10 * time.Millisecond)
			}
			for _, w := range held {
				w.closeAndDrain()
			}
		})
	}
	logs := r.logs.String()
	for _, want := range []string{"result=error", `reason="too many upstream sessions for this identity"`,
		"identity shared@contoso.test has 3 upstream sessions open, as many as max_upstream_per_identity allows: raise max_upstream_per_identity"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %q", want)
		}
	}
}
