package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/xoauthd/xoauthd/proxy"
	"github.com/xoauthd/xoauthd/tokens"
)

// errTokens fails every Token and Refresh with err.
type errTokens struct{ err error }

func (e errTokens) Token(context.Context, string) (string, error)           { return "", e.err }
func (e errTokens) Refresh(context.Context, string, string) (string, error) { return "", e.err }

// TestClassifiedTokens checks the token adapter of the gateways: each class
// of token error carries the proxy's sentinel for the login failure policy,
// and keeps its text and its type for the log and its explanation.
func TestClassifiedTokens(t *testing.T) {
	tests := []struct {
		err     error
		outcome proxy.Outcome
		why     string // in the explanation
	}{
		{&tokens.NeedsLoginError{Identity: "a@contoso.test", Code: "AADSTS700082", Meaning: "refresh token expired",
			Fix: `run "xoauthd login a@contoso.test"`}, proxy.OutcomeSignInNeeded, "Refresh token expired (AADSTS700082)"},
		{fmt.Errorf("refreshing: %w", &tokens.ConfigError{Provider: "m365", Code: "AADSTS7000215", Meaning: "invalid client secret",
			Fix: "set a valid client_secret"}), proxy.OutcomeConfiguration, "Provider m365: invalid client secret (AADSTS7000215). Set a valid client_secret."},
		{&tokens.TemporaryError{Meaning: "the identity provider answered 503"}, proxy.OutcomeUnavailable, "The identity provider answered 503. Nothing to fix"},
		{errors.New("reading the token store: disk full"), proxy.OutcomeUnavailable, ""},
	}
	for _, tt := range tests {
		src := classifiedTokens{errTokens{tt.err}}
		for name, call := range map[string]func() error{
			"Token":   func() error { _, err := src.Token(context.Background(), "a@contoso.test"); return err },
			"Refresh": func() error { _, err := src.Refresh(context.Background(), "a@contoso.test", "old"); return err },
		} {
			err := call()
			if f := proxy.Classify(err); f.Outcome != tt.outcome {
				t.Errorf("%s(%v): outcome %d, want %d", name, tt.err, f.Outcome, tt.outcome)
			}
			if err.Error() != tt.err.Error() || !errors.Is(err, tt.err) {
				t.Errorf("%s: %q does not keep %q", name, err, tt.err)
			}
			why, ok := explainLogin(err, proxy.Account{Identity: "a@contoso.test"})
			if ok != (tt.why != "") || !strings.Contains(why, tt.why) {
				t.Errorf("%s(%v): why = %q, %v; want %q", name, tt.err, why, ok, tt.why)
			}
		}
	}
	if _, err := (classifiedTokens{opsTokens{}}).Token(context.Background(), "a"); err != nil {
		t.Errorf("a good token: %v", err)
	}
}

// identityTokens fails Token and Refresh for the identities in errs and
// hands out "tok-<identity>" to the others.
type identityTokens struct{ errs map[string]error }

func (s identityTokens) Token(_ context.Context, identity string) (string, error) {
	if err := s.errs[identity]; err != nil {
		return "", err
	}
	return "tok-" + identity, nil
}

func (s identityTokens) Refresh(ctx context.Context, identity, _ string) (string, error) {
	return s.Token(ctx, identity)
}

// replyClass names the class of a login reply, by protocol: what the
// client is to do about it.
func replyClass(proto, reply string) string {
	classes := map[string][][2]string{
		"imap": {{"a NO [AUTHENTICATIONFAILED] ", "credentials"}, {"a NO [CONTACTADMIN] ", "admin"},
			{"a NO [UNAVAILABLE] ", "temporary"}, {"a NO [LIMIT] ", "limit"}, {"a OK ", "ok"}},
		"pop3": {{"-ERR [AUTH] ", "credentials"}, {"-ERR [SYS/PERM] ", "admin"},
			{"-ERR [SYS/TEMP] ", "temporary"}, {"-ERR [IN-USE] ", "limit"}, {"+OK ", "ok"}},
		"smtp": {{"535 5.7.8 ", "credentials"}, {"535 5.7.0 ", "admin"},
			{"454 4.7.0 ", "temporary"}, {"421 4.3.2 ", "limit"}, {"235 ", "ok"}},
	}
	for _, c := range classes[proto] {
		if strings.HasPrefix(reply, c[0]) {
			return c[1]
		}
	}
	return "unknown: " + reply
}

// TestLoginFailureSameClassOnEveryFront runs each cause of a failed login
// through the daemon's IMAP, POP3 and SMTP listeners, with the real
// credential check, the daemon's token adapter and an in-memory upstream,
// and checks that every protocol answers it with the same class of reply
// and audit result, and logs the cause.
func TestLoginFailureSameClassOnEveryFront(t *testing.T) {
	acct := func(name string) policyAccount {
		id := name + "@contoso.test"
		return policyAccount{login: "erp-" + name, password: name + " pw", identity: id, mailbox: id}
	}
	names := []string{"ok", "wrongpw", "guessed", "signin", "config", "idpdown", "refused", "busy"}
	var accounts []policyAccount
	for _, n := range names {
		accounts = append(accounts, acct(n))
	}
	r := newPolicyRig(t, policyRigOptions{
		tokens: identityTokens{errs: map[string]error{
			"signin@contoso.test": &tokens.NeedsLoginError{Identity: "signin@contoso.test", Code: "AADSTS700082",
				Meaning: "refresh token expired", Fix: `run "xoauthd login signin@contoso.test"`},
			"config@contoso.test": &tokens.ConfigError{Provider: "test", Code: "AADSTS7000215", Meaning: "invalid client secret",
				Fix: "set client_secret to a current secret of the app registration"},
			"idpdown@contoso.test": &tokens.TemporaryError{Meaning: "the identity provider answered 503"},
		}},
		creds:    proxy.CredentialOptions{AddrLimit: -1, LoginLimit: 3, BaseDelay: -1},
		maxPer:   1,
		accounts: accounts,
		reject:   map[string]bool{"refused@contoso.test": true},
	})
	logins := map[string]func(*testing.T, string, policyAccount) (string, *wire){"imap": loginIMAP, "pop3": loginPOP3, "smtp": loginSMTP}
	addrs := map[string]string{"imap": r.imap, "pop3": r.opsRig.pop, "smtp": r.smtp}
	protos := []string{"imap", "pop3", "smtp"}

	// Three wrong passwords for one login: it is throttled from then on.
	for i, p := range protos {
		reply, w := logins[p](t, addrs[p], policyAccount{login: "erp-guessed", password: fmt.Sprintf("guess %d", i)})
		if replyClass(p, reply) != "credentials" {
			t.Fatalf("wrong password %d on %s: %q", i, p, reply)
		}
		w.closeAndDrain()
	}
	// One session of busy@ per protocol: the limit is 1.
	for _, p := range protos {
		reply, w := logins[p](t, addrs[p], acct("busy"))
		if replyClass(p, reply) != "ok" {
			t.Fatalf("first session of busy on %s: %q", p, reply)
		}
		t.Cleanup(w.closeAndDrain)
	}

	tests := []struct {
		cause  string
		acct   policyAccount
		before func()
		class  string
		result string
		log    string // in every protocol's audit line
	}{
		{"bad credentials", policyAccount{login: "erp-wrongpw", password: "wrong"}, nil, "credentials", "failure", `reason="bad local credentials"`},
		{"unknown login", policyAccount{login: "nobody", password: "x"}, nil, "credentials", "failure", `reason="bad local credentials"`},
		{"throttled", acct("guessed"), nil, "temporary", "failure", `for login \"erp-guessed\" (limit 3)`},
		{"sign-in needed", acct("signin"), nil, "admin", "failure", "Refresh token expired (AADSTS700082)"},
		{"configuration error", acct("config"), nil, "admin", "failure", "Provider test: invalid client secret (AADSTS7000215)"},
		{"identity provider down", acct("idpdown"), nil, "temporary", "error", "The identity provider answered 503. Nothing to fix"},
		{"upstream refusal", acct("refused"), nil, "admin", "failure", `reason="the upstream refused the login"`},
		{"per-identity limit", acct("busy"), nil, "limit", "error", "as many as max_upstream_per_identity allows"},
		{"upstream down", acct("ok"), func() { r.sub.Close(); r.pop.Close(); r.mem.Close() }, "temporary", "error",
			`reason="identity provider or upstream unavailable"`},
	}
	for _, tt := range tests {
		t.Run(tt.cause, func(t *testing.T) {
			if tt.before != nil {
				tt.before()
			}
			limited := map[string]float64{}
			for _, p := range protos {
				limited[p] = r.metric(`xoauthd_logins_identity_limited_total{protocol="` + p + `"}`)
			}
			for _, p := range protos {
				reply, w := logins[p](t, addrs[p], tt.acct)
				w.closeAndDrain()
				if got := replyClass(p, reply); got != tt.class {
					t.Errorf("%s: %q is %s, want %s", p, reply, got, tt.class)
				}
				if !auditLine(r.logs.String(), p, tt.acct.login, "result="+tt.result, tt.log) {
					t.Errorf("%s: no audit line with result=%s and %s", p, tt.result, tt.log)
				}
				want := limited[p]
				if tt.class == "limit" {
					want++
				}
				if got := r.metric(`xoauthd_logins_identity_limited_total{protocol="` + p + `"}`); got != want {
					t.Errorf("%s: identity-limited logins counted %v, want %v", p, got, want)
				}
			}
		})
	}
}

// auditLine reports whether logs has a login audit line of proto and
// login holding every one of wants.
func auditLine(logs, proto, login string, wants ...string) bool {
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, "msg=login ") || !strings.Contains(line, "proto="+proto+" ") || !strings.Contains(line, "login="+login+" ") {
			continue
		}
		ok := true
		for _, w := range wants {
			ok = ok && strings.Contains(line, w)
		}
		if ok {
			return true
		}
	}
	return false
}
