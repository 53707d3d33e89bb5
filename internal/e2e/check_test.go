package e2e

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/check"
	"github.com/xoauthd/xoauthd/internal/memupstream"
	"github.com/xoauthd/xoauthd/internal/passhash"
	"github.com/xoauthd/xoauthd/internal/testidp"
	"github.com/xoauthd/xoauthd/tokens"

	"github.com/xoauthd/xoauthd/internal/testkit"
)

// TestCheckSharesTheProxysLogin runs a client through the daemon and
// "xoauthd check" against one fault-injecting upstream: the fronts and
// check log in upstream with the same code, so each fault fails both the
// same way, the front's log explaining it with the cause check reports.
func TestCheckSharesTheProxysLogin(t *testing.T) {
	r := &rig{t: t, dir: t.TempDir(), logs: &testkit.SyncBuffer{}}
	r.idp = testidp.New(t, testidp.Options{})
	r.idp.AddClient(testidp.Client{ID: clientID, Public: true})
	r.idp.AddUser(alice)
	var refuse atomic.Bool
	mem := memupstream.MustStart(t, memupstream.Options{Validate: func(string, string) error {
		if refuse.Load() {
			return errors.New("token refused")
		}
		return nil
	}})
	mem.AddUser(alice)
	pop, err := mem.StartPOP3(memupstream.POP3Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pop.Close() })
	sub, err := mem.StartSMTP(memupstream.SMTPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	hash, err := passhash.Hash(alicePass)
	if err != nil {
		t.Fatal(err)
	}
	r.imap, r.pop3, r.smtp = testkit.FreeAddr(t), testkit.FreeAddr(t), testkit.FreeAddr(t)
	r.start(testkit.ThreeListeners{
		Store:  fmt.Sprintf("store: {path: %[1]s/tokens.json, key: \"${file:%[1]s/store.key}\"}\n", r.dir),
		Tenant: r.idp.Tenant(), ClientID: clientID, Authority: r.idp.Authority(), CAFile: mem.CAFile(),
		IMAP: r.imap, IMAPUpstream: mem.Addr(), POP3: r.pop3, POP3Upstream: pop.Addr(),
		SMTP: r.smtp, SMTPUpstream: sub.Addr(),
		Login: aliceLogin, PasswordHash: hash, Identity: alice,
	}.YAML(), alice)

	key, _, err := tokens.LoadKey(r.cfg.Store)
	if err != nil {
		t.Fatal(err)
	}
	store, err := tokens.OpenStore(r.cfg.Store.Path, key)
	if err != nil {
		t.Fatal(err)
	}
	checker := check.New(check.Options{Config: r.cfg, Tokens: func(p *config.Provider) check.Tokens {
		return tokens.NewManager(store, func(string) (*config.Provider, error) { return p, nil }, tokens.Options{})
	}})

	tests := []struct {
		name   string
		fault  memupstream.Fault // on alice's IMAP logins
		refuse bool              // the upstream refuses every token
		fail   bool              // the logins must fail
		rule   string            // check's explanation of the IMAP failure
	}{
		{name: "no fault"},
		{name: "not connected", fault: memupstream.FaultNotConnected, fail: true, rule: "imap-not-connected"},
		{name: "token expired", fault: memupstream.FaultTokenExpired, fail: true, rule: "imap-token-expired"},
		{name: "closed at login", fault: memupstream.FaultCloseOnLogin, fail: true, rule: "connection-closed"},
		{name: "token refused", refuse: true, fail: true, rule: "imap-token-refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem.SetFault(alice, tt.fault, -1)
			refuse.Store(tt.refuse)
			defer func() {
				mem.SetFault(alice, memupstream.FaultNone, 0)
				refuse.Store(false)
			}()
			ar := checker.CheckAccount(context.Background(), r.cfg.Accounts[0], nil)
			for _, s := range ar.Steps {
				if s.Name == "config" || s.Name == "token" {
					if s.Status != check.StatusPass {
						t.Fatalf("check step %s: %s %q", s.Name, s.Status, s.Summary)
					}
					continue
				}
				if tt.fault != memupstream.FaultNone && s.Name != "imap" {
					continue // memupstream's faults are IMAP's only
				}
				mustFail := tt.fail
				reply := r.attemptLogin(s.Name, aliceLogin, alicePass, nil)
				served := strings.HasPrefix(reply, successReply[s.Name])
				if mustFail == served || mustFail != (s.Status == check.StatusFail) {
					t.Errorf("%s: the front answered %q, check says %s %q; want both to fail: %v", s.Name, reply, s.Status, s.Summary, mustFail)
				}
				if !mustFail {
					continue
				}
				if s.Name == "imap" && (s.Problem == nil || s.Problem.Rule != tt.rule) {
					t.Errorf("check explains the imap failure as %#v, want rule %s", s.Problem, tt.rule)
				}
				// The front's audit line explains the failure with the
				// cause check reports (quoted as the log quotes it; the log
				// starts it with a capital).
				if cause := s.Problem.Cause; !r.hasLog("login="+aliceLogin, quoted(strings.ToUpper(cause[:1])+cause[1:])) {
					t.Errorf("%s: no front log line with check's cause %q:\n%s", s.Name, cause, r.logs.String())
				}
			}
		})
	}
}

// quoted is s as the text log writes it inside a quoted value.
func quoted(s string) string {
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}
