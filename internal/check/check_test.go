package check

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/internal/diagnose"
	"github.com/xoauthd/xoauthd/internal/testidp"
	"github.com/xoauthd/xoauthd/internal/testkit"
)

// checkRig is a test IdP, alice signed in, and fake IMAP, POP3 and SMTP
// upstreams with the given scripts.
func checkRig(t *testing.T, is imapScript, ps pop3Script, ss smtpScript) (*checkEnv, *scriptServer, *scriptServer, *fakeSubmission) {
	t.Helper()
	pki := testkit.NewPKI(t)
	e := newCheckEnv(t)
	imapSrv := fakeIMAP(t, pki.Server, is)
	popSrv := fakePOP3(t, pki.Server, ps)
	smtpSrv := fakeSMTP(t, pki.Server, ss)
	e.server("imap", imapSrv.addr(), pki.CAFile, "")
	e.server("pop3", popSrv.addr(), pki.CAFile, "")
	e.server("smtp", smtpSrv.addr, pki.CAFile, "upstream_tls: starttls")
	e.account("erp-alice", checkAlice, "")
	e.write()
	e.login(checkAlice)
	return e, imapSrv, popSrv, smtpSrv
}

func TestCheckAllPass(t *testing.T) {
	t.Parallel()
	e, imapSrv, popSrv, smtpSrv := checkRig(t, imapScript{exists: 7}, pop3Script{}, smtpScript{})
	r := e.report(checkBob)
	if !r.OK {
		t.Fatalf("report %+v", r)
	}
	names := []string{}
	for _, s := range r.Accounts[0].Steps {
		names = append(names, s.Name)
		if s.Status != StatusPass || s.Problem != nil {
			t.Errorf("step %s: %s %q %v", s.Name, s.Status, s.Summary, s.Problem)
		}
	}
	if want := []string{"config", "token", "imap", "pop3", "smtp"}; !slices.Equal(names, want) {
		t.Errorf("steps %v, want %v", names, want)
	}
	tok := step(t, r, "token")
	if tok.SignedIn != checkAlice || tok.Expiry.Before(time.Now().Add(time.Hour)) ||
		!slices.Contains(tok.Scopes, "IMAP.AccessAsUser.All") || !slices.Contains(tok.Scopes, "SMTP.Send") {
		t.Errorf("token step %+v", tok)
	}
	if im := step(t, r, "imap"); im.Messages == nil || *im.Messages != 7 || !strings.HasPrefix(im.TLS, "TLS 1.") {
		t.Errorf("imap step %+v", im)
	}
	if pop := step(t, r, "pop3"); pop.Messages == nil || *pop.Messages != 2 || pop.Octets == nil || *pop.Octets != 3218 {
		t.Errorf("pop3 step %+v", pop)
	}
	sm := step(t, r, "smtp")
	if sm.TestReply != "250 2.0.0 OK: queued" || sm.TLS == "" {
		t.Errorf("smtp step %+v", sm)
	}
	users, msgs := smtpSrv.seen()
	if !slices.Equal(users, []string{checkAlice}) || len(msgs) != 1 ||
		!strings.HasPrefix(msgs[0], checkAlice+" -> "+checkBob+": ") || !strings.Contains(msgs[0], "Subject: xoauthd check test message") {
		t.Errorf("smtp upstream saw users %v, messages %q", users, msgs)
	}
	if u := imapSrv.seen(); !slices.Equal(u, []string{checkAlice}) {
		t.Errorf("imap user= %v", u)
	}
	if u := popSrv.seen(); !slices.Equal(u, []string{checkAlice}) {
		t.Errorf("pop3 user= %v", u)
	}
	// A forced refresh; the test IdP mints identical tokens within one
	// second, which makes the Manager ask a second time.
	if got := e.idp.Counts()["refresh_token"]; got < 1 || got > 2 {
		t.Errorf("%d refresh requests, want one forced refresh", got)
	}
}

// TestCheckSharedMailbox: IMAP and POP3 log in as the shared mailbox, SMTP
// as the identity, and the test message comes from the shared mailbox.
func TestCheckSharedMailbox(t *testing.T) {
	t.Parallel()
	pki := testkit.NewPKI(t)
	e := newCheckEnv(t)
	imapSrv := fakeIMAP(t, pki.Server, imapScript{listStatus: "BAD User is authenticated but not connected."})
	smtpSrv := fakeSMTP(t, pki.Server, smtpScript{dataErr: &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 2, 252},
		Message: "SendAsDenied; alice@contoso.test not allowed to send as shared@contoso.test; STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied"}})
	e.server("imap", imapSrv.addr(), pki.CAFile, "")
	e.server("smtp", smtpSrv.addr, pki.CAFile, "upstream_tls: starttls")
	e.account("erp-shared", checkAlice, checkShared)
	e.write()
	e.login(checkAlice)
	r := e.report(checkBob)
	if r.OK {
		t.Fatalf("report ok: %+v", r)
	}
	if u := imapSrv.seen(); !slices.Equal(u, []string{checkShared}) {
		t.Errorf("imap user= %v, want the shared mailbox", u)
	}
	if users, _ := smtpSrv.seen(); !slices.Equal(users, []string{checkAlice}) {
		t.Errorf("smtp user= %v, want the identity", users)
	}
	im := step(t, r, "imap")
	if im.Problem == nil || im.Problem.Rule != "imap-not-connected" ||
		!strings.Contains(im.Problem.Fix, "`Add-MailboxPermission -Identity shared@contoso.test -User alice@contoso.test -AccessRights FullAccess`") ||
		!strings.Contains(im.Summary, "opening the mailbox shared@contoso.test failed") {
		t.Errorf("imap step %+v %+v", im, im.Problem)
	}
	sm := step(t, r, "smtp")
	if sm.Problem == nil || sm.Problem.Rule != "smtp-send-as-denied-data" ||
		!strings.Contains(sm.Problem.Fix, "`Add-RecipientPermission shared@contoso.test -AccessRights SendAs -Trustee alice@contoso.test`") {
		t.Errorf("smtp step %+v %+v", sm, sm.Problem)
	}
	if cfg := step(t, r, "config"); len(cfg.Details) == 0 || !strings.Contains(cfg.Details[0], "needs Send As") {
		t.Errorf("config step %+v", cfg)
	}
}

// TestCheckReplies drives every classified upstream reply end to end: the
// fake upstream answers with Exchange's text, the check names the rule and
// a fix that names the account.
func TestCheckReplies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		imap     imapScript
		pop      pop3Script
		smtp     smtpScript
		sendTest bool
		step     string // the step that must fail
		rule     string
		fix      string // substring of the fix
	}{
		{name: "smtp tenant", step: "smtp", rule: "smtp-auth-disabled-tenant", fix: "`Set-CASMailbox alice@contoso.test -SmtpClientAuthenticationDisabled $false`",
			smtp: smtpScript{authErr: smtpErr(535, 139, "Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. [SN4PR0601CA0005.namprd06.prod.outlook.com]")}},
		{name: "smtp mailbox", step: "smtp", rule: "smtp-auth-disabled-mailbox", fix: "Manage email apps > Authenticated SMTP",
			smtp: smtpScript{authErr: smtpErr(535, 139, "Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information. [BN9PR03CA0123.namprd03.prod.outlook.com]")}},
		{name: "smtp security defaults", step: "smtp", rule: "smtp-auth-security-defaults", fix: "Manage security defaults",
			smtp: smtpScript{authErr: smtpErr(535, 139, "Authentication unsuccessful, user is locked by your organization's security defaults policy. Contact your administrator. [AM0PR10CA0071.EURPRD10.PROD.OUTLOOK.COM]")}},
		{name: "smtp 5.7.3 after challenge", step: "smtp", rule: "smtp-token-refused", fix: "`xoauthd login alice@contoso.test`",
			smtp: smtpScript{challenge: true, authErr: &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 3}, Message: "Authentication unsuccessful [SN7PR04CA0112.namprd04.prod.outlook.com]"}}},
		{name: "smtp send as", step: "smtp", rule: "smtp-send-as-denied", fix: "-Trustee alice@contoso.test", sendTest: true,
			smtp: smtpScript{mailErr: &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 60}, Message: "SMTP; Client does not have permissions to send as this sender"}}},
		{name: "smtp concurrency", step: "smtp", rule: "smtp-concurrency", fix: "max_upstream_per_identity",
			smtp: smtpScript{authErr: &smtp.SMTPError{Code: 432, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending for more information."}}},
		{name: "imap authenticate failed", step: "imap", rule: "imap-token-refused", fix: "`Set-CASMailbox alice@contoso.test -ImapEnabled $true`",
			imap: imapScript{authStatus: "NO AUTHENTICATE failed."}},
		{name: "imap authenticate failed after challenge", step: "imap", rule: "imap-token-refused", fix: "IMAP.AccessAsUser.All",
			imap: imapScript{challenge: true, authStatus: "NO AUTHENTICATE failed."}},
		{name: "imap not connected", step: "imap", rule: "imap-not-connected", fix: "`Set-CASMailbox alice@contoso.test -ImapEnabled $true`",
			imap: imapScript{listStatus: "BAD User is authenticated but not connected."}},
		{name: "imap token expired", step: "imap", rule: "imap-token-expired", fix: "fresh token",
			imap: imapScript{authBye: "Session invalidated - AccessTokenExpired"}},
		{name: "imap throttled", step: "imap", rule: "imap-throttled", fix: "Exchange allows about 20",
			imap: imapScript{authStatus: "NO Request is throttled. Suggested Backoff Time: 29000 milliseconds"}},
		{name: "pop3 failure", step: "pop3", rule: "pop3-token-refused", fix: "`Set-CASMailbox alice@contoso.test -PopEnabled $true`",
			pop: pop3Script{authReply: "-ERR Authentication failure: unknown user name or bad password."}},
		{name: "pop3 failure after challenge", step: "pop3", rule: "pop3-token-refused", fix: "POP.AccessAsUser.All",
			pop: pop3Script{challenge: true, authReply: "-ERR Authentication failure: unknown user name or bad password."}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, _, _, _ := checkRig(t, tt.imap, tt.pop, tt.smtp)
			sendTo := ""
			if tt.sendTest {
				sendTo = checkBob
			}
			r := e.report(sendTo)
			if r.OK {
				t.Errorf("report ok, want a failure")
			}
			for _, s := range r.Accounts[0].Steps {
				if s.Name != tt.step && s.Status != StatusPass {
					t.Errorf("step %s: %s %q", s.Name, s.Status, s.Summary)
				}
			}
			s := step(t, r, tt.step)
			if s.Status != StatusFail || s.Problem == nil || s.Problem.Rule != tt.rule || !strings.Contains(s.Problem.Fix, tt.fix) || s.Reply == "" {
				t.Errorf("step %s: %s %q, problem %#v, reply %q; want rule %s with %q", s.Name, s.Status, s.Summary, s.Problem, s.Reply, tt.rule, tt.fix)
			}
		})
	}
}

// TestCheckUnknownReply: a reply outside the table is shown raw and called
// unknown.
func TestCheckUnknownReply(t *testing.T) {
	t.Parallel()
	e, _, _, _ := checkRig(t, imapScript{}, pop3Script{},
		smtpScript{authErr: &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 999}, Message: "Something new happened"}})
	r := e.report("")
	out := text(r)
	if flat := strings.Join(strings.Fields(out), " "); r.OK ||
		!strings.Contains(flat, `sent a reply xoauthd does not know: "554 5.7.999 Something new happened".`) {
		t.Errorf("ok %v:\n%s", r.OK, out)
	}
	if p := step(t, r, "smtp").Problem; p == nil || p.Kind != diagnose.KindUnknown || p.Raw != "554 5.7.999 Something new happened" {
		t.Errorf("problem %#v", p)
	}
}

func smtpErr(code, detail int, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{5, 7, detail}, Message: msg}
}

// TestCheckTokenFailures drives identity provider failures end to end.
func TestCheckTokenFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		fault func(e *checkEnv)
		rule  string
		code  string
		kind  diagnose.Kind
		fix   string
	}{
		{"revoked grant", func(e *checkEnv) { e.idp.RevokeUser(checkAlice) }, "token-needs-login", "AADSTS700082", diagnose.KindLogin, "xoauthd login alice@contoso.test"},
		{"mfa required", func(e *checkEnv) { e.idp.RequireMFA(checkAlice) }, "token-needs-login", "AADSTS50076", diagnose.KindLogin, "multi-factor"},
		{"idp down", func(e *checkEnv) { e.idp.Close() }, "token-temporary", "", diagnose.KindTemporary, "reaches the identity provider"},
		{"idp failing", func(e *checkEnv) { e.idp.FailWith(testidp.Failure{Status: http.StatusServiceUnavailable}) }, "token-temporary", "AADSTS90033", diagnose.KindTemporary, "tries again by itself"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, _, _, _ := checkRig(t, imapScript{}, pop3Script{}, smtpScript{})
			tt.fault(e)
			r := e.report("")
			if r.OK {
				t.Errorf("report ok, want a failure")
			}
			tok := step(t, r, "token")
			if tok.Status != StatusFail || tok.Problem == nil || tok.Problem.Rule != tt.rule || tok.Problem.Code != tt.code ||
				tok.Problem.Kind != tt.kind || !strings.Contains(tok.Problem.Fix, tt.fix) {
				t.Errorf("token step %q, problem %#v", tok.Summary, tok.Problem)
			}
			// The access token from the login is still valid: the mail
			// steps run with it and pass.
			if !slices.ContainsFunc(tok.Details, func(d string) bool { return strings.Contains(d, "cached access token") }) {
				t.Errorf("token details %q do not mention the cached token", tok.Details)
			}
			for _, name := range []string{"imap", "pop3", "smtp"} {
				if s := step(t, r, name); s.Status != StatusPass {
					t.Errorf("%s: %s %q", name, s.Status, s.Summary)
				}
			}
		})
	}
}

// TestCheckNotLoggedIn: no token at all skips the mail steps.
func TestCheckNotLoggedIn(t *testing.T) {
	t.Parallel()
	pki := testkit.NewPKI(t)
	e := newCheckEnv(t)
	e.server("imap", fakeIMAP(t, pki.Server, imapScript{}).addr(), pki.CAFile, "")
	e.account("erp-bob", checkBob, "")
	e.write()
	r := e.report("")
	tok := step(t, r, "token")
	if r.OK || tok.Problem == nil || tok.Problem.Kind != diagnose.KindLogin || !strings.Contains(tok.Problem.Fix, "xoauthd login bob@contoso.test") {
		t.Errorf("ok %v, token step %+v %#v", r.OK, tok, tok.Problem)
	}
	for _, name := range []string{"imap", "pop3", "smtp"} {
		if s := step(t, r, name); s.Status != StatusSkip {
			t.Errorf("%s: %s %q, want skipped", name, s.Status, s.Summary)
		}
	}
	if s := step(t, r, "pop3"); s.Summary != "skipped: no pop3 server in the configuration" {
		t.Errorf("pop3 skipped with %q", s.Summary)
	}
	if s := step(t, r, "imap"); !strings.Contains(s.Summary, "no access token") {
		t.Errorf("imap skipped with %q", s.Summary)
	}
}

// TestCheckConnectionFailures covers TLS and dial failures.
func TestCheckConnectionFailures(t *testing.T) {
	t.Parallel()
	pki := testkit.NewPKI(t)
	other := testkit.NewPKI(t) // a CA the configuration does not trust
	tests := []struct {
		name   string
		server func(e *checkEnv)
		rule   string
	}{
		{"tls untrusted", func(e *checkEnv) {
			e.server("imap", fakeIMAP(t, other.Server, imapScript{}).addr(), pki.CAFile, "")
		}, "tls-untrusted"},
		{"connection refused", func(e *checkEnv) { e.server("imap", closedAddr(t), pki.CAFile, "") }, "connection-refused"},
		{"not tls", func(e *checkEnv) { e.server("imap", fakeIMAP(t, nil, imapScript{}).addr(), pki.CAFile, "") }, "tls-not-tls"},
		{"starttls untrusted", func(e *checkEnv) {
			e.server("smtp", fakeSMTP(t, other.Server, smtpScript{}).addr, pki.CAFile, "upstream_tls: starttls")
		}, "tls-untrusted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newCheckEnv(t)
			tt.server(e)
			e.account("erp-alice", checkAlice, "")
			e.write()
			e.login(checkAlice)
			r := e.report("")
			var failed []Step
			for _, s := range r.Accounts[0].Steps {
				if s.Status == StatusFail {
					failed = append(failed, s)
				}
			}
			if r.OK || len(failed) != 1 || failed[0].Problem == nil || failed[0].Problem.Rule != tt.rule {
				t.Fatalf("ok %v, failed steps %+v", r.OK, failed)
			}
			if p := failed[0].Problem; p.Kind == diagnose.KindUnknown || p.Fix == "" || p.Raw == "" {
				t.Errorf("problem %#v", p)
			}
		})
	}
}

// TestCheckText checks the text report: every step with its mark, causes
// and fixes wrapped to 80 columns, no colour when not on a terminal.
func TestCheckText(t *testing.T) {
	t.Parallel()
	e, _, _, _ := checkRig(t, imapScript{exists: 3}, pop3Script{authReply: "-ERR Authentication failure: unknown user name or bad password."},
		smtpScript{authErr: smtpErr(535, 139, "Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. [SN4PR0601CA0005.namprd06.prod.outlook.com]")})
	r := e.report("")
	if r.OK {
		t.Fatalf("report ok, want a failure")
	}
	out := text(r)
	for _, want := range []string{
		"erp-alice: identity alice@contoso.test, provider test",
		"  ✓ config  provider test (microsoft, authcode flow)",
		"  ✓ token   refreshed; valid until ",
		"  ✓ imap    127.0.0.1:",
		"INBOX has 3 messages",
		"  ✗ pop3    127.0.0.1:",
		"  ✗ smtp    127.0.0.1:",
		"SMTP AUTH is disabled for this tenant (535 5.7.139).",
		"Fix: An admin enables it with",
		"`Set-TransportConfig -SmtpClientAuthenticationDisabled $false`",
		"Server reply: 535 5.7.139 Authentication unsuccessful,",
		"2 steps failed: erp-alice pop3, erp-alice smtp.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, l := range strings.Split(out, "\n") {
		if n := utf8.RuneCountInString(l); n > checkWidth && strings.Contains(strings.TrimSpace(l), " ") {
			t.Errorf("line of %d columns: %q", n, l)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("colour codes in output to a buffer")
	}
}

// TestCheckJSONShape pins the field names scripts rely on.
func TestCheckJSONShape(t *testing.T) {
	t.Parallel()
	e, _, _, _ := checkRig(t, imapScript{authStatus: "NO AUTHENTICATE failed."}, pop3Script{}, smtpScript{})
	var buf bytes.Buffer
	if err := WriteJSON(&buf, e.report("")); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	var doc struct {
		Config   string `json:"config"`
		OK       *bool  `json:"ok"`
		Accounts []struct {
			Login, Identity, Mailbox, Provider string
			OK                                 *bool `json:"ok"`
			Steps                              []map[string]json.RawMessage
		} `json:"accounts"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Config != e.path || doc.OK == nil || *doc.OK || len(doc.Accounts) != 1 {
		t.Fatalf("report %s", out)
	}
	a := doc.Accounts[0]
	if a.Login != "erp-alice" || a.Identity != checkAlice || a.Mailbox != checkAlice || a.Provider != "test" || a.OK == nil || *a.OK {
		t.Errorf("account %+v", a)
	}
	wantKeys := map[string][]string{
		"config": {"step", "status", "summary"},
		"token":  {"step", "status", "summary", "details", "expiry", "signed_in_user", "scopes"},
		"imap":   {"step", "status", "summary", "problem", "reply", "upstream", "tls"},
		"pop3":   {"step", "status", "summary", "upstream", "tls", "messages", "octets"},
		"smtp":   {"step", "status", "summary", "upstream", "tls"},
	}
	for _, s := range a.Steps {
		var name string
		_ = json.Unmarshal(s["step"], &name)
		for _, k := range wantKeys[name] {
			if _, ok := s[k]; !ok {
				t.Errorf("step %s lacks %q: %v", name, k, keys(s))
			}
		}
		if name == "imap" {
			var p map[string]string
			if err := json.Unmarshal(s["problem"], &p); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"rule", "code", "kind", "cause", "fix", "raw"} {
				if p[k] == "" {
					t.Errorf("problem lacks %q: %v", k, p)
				}
			}
			if p["code"] != "IMAP NO AUTHENTICATE failed" || p["kind"] != "admin" {
				t.Errorf("problem %v", p)
			}
		}
	}
}

func keys(m map[string]json.RawMessage) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestCheckProgress: the progress callback sees every step as it ends, in
// the order of the report, with the account's login.
func TestCheckProgress(t *testing.T) {
	t.Parallel()
	e, _, _, _ := checkRig(t, imapScript{}, pop3Script{authReply: "-ERR Authentication failure: unknown user name or bad password."}, smtpScript{})
	e.account("erp-bob", checkBob, "")
	e.write()
	c, cfg := e.checker("")
	var seen []string
	r := c.Check(context.Background(), cfg.Accounts, func(login string, s Step) {
		seen = append(seen, login+" "+s.Name+" "+s.Status)
	})
	var want []string
	for _, a := range r.Accounts {
		for _, s := range a.Steps {
			want = append(want, a.Login+" "+s.Name+" "+s.Status)
		}
	}
	if r.OK || !slices.Equal(seen, want) || len(seen) != 10 {
		t.Errorf("ok %v, progress %q, report %q", r.OK, seen, want)
	}
	if !slices.Contains(seen, "erp-alice pop3 fail") || !slices.Contains(seen, "erp-bob token fail") || !slices.Contains(seen, "erp-alice imap pass") {
		t.Errorf("progress %q", seen)
	}
	one := c.CheckAccount(context.Background(), cfg.Accounts[0], nil)
	if one.Login != "erp-alice" || one.OK || len(one.Steps) != 5 {
		t.Errorf("CheckAccount without progress: %+v", one)
	}
}
