package console

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/check"
	"github.com/xoauthd/xoauthd/internal/testkit"
)

// runTest presses Test (form) and waits for the run to end; it returns
// the run's page address and its final page.
func (b *browser) runTest(form url.Values) (string, answer) {
	b.t.Helper()
	a := b.post("/test", form)
	if a.code != http.StatusSeeOther || !strings.HasPrefix(a.location, "/test/") {
		b.t.Fatalf("test: %d %q\n%s", a.code, a.location, a.body)
	}
	var page answer
	testkit.Eventually(b.t, time.Minute, "the test to finish", func() bool {
		page = b.get(a.location + "?part=live")
		return !strings.Contains(page.body, "data-live=")
	})
	return a.location, b.get(a.location)
}

// report downloads a finished run's JSON report.
func (b *browser) report(loc string) check.Report {
	b.t.Helper()
	a := b.get(loc + "/report.json")
	if a.code != http.StatusOK || a.header.Get("Content-Type") != "application/json" || !strings.Contains(a.header.Get("Content-Disposition"), "attachment") {
		b.t.Fatalf("report: %d %v\n%s", a.code, a.header, a.body)
	}
	var r check.Report
	if err := json.Unmarshal([]byte(a.body), &r); err != nil {
		b.t.Fatalf("report is not check's JSON: %v\n%s", err, a.body)
	}
	return r
}

// TestTestAgainstDovecot: after Connect, Test runs check's steps against
// Dovecot and every one passes; the JSON is check --json's. After the
// identity provider revokes the sign-in, the token step fails with its
// cause and fix.
func TestTestAgainstDovecot(t *testing.T) {
	r := newRig(t, rigOptions{dovecot: true})
	b := r.browser()
	token := b.signIn()
	b.comeBack(r.authorize(b.connect(token, alice)))

	loc, page := b.runTest(url.Values{"csrf": {token}, "login": {aliceLogin}})
	if !strings.Contains(page.body, "Every step passed.") {
		t.Fatalf("test page:\n%s", page.body)
	}
	rep := b.report(loc)
	if !rep.OK || len(rep.Accounts) != 1 || rep.Accounts[0].Login != aliceLogin {
		t.Fatalf("report %+v", rep)
	}
	var names []string
	for _, s := range rep.Accounts[0].Steps {
		names = append(names, s.Name+":"+s.Status)
		if !strings.Contains(page.body, "<strong>"+s.Name+"</strong> <span class=\"status\">passed</span>") {
			t.Errorf("the page does not show step %s passed", s.Name)
		}
	}
	if got := strings.Join(names, " "); got != "config:pass token:pass imap:pass pop3:pass smtp:pass" {
		t.Fatalf("steps %s", got)
	}

	r.idp.RevokeUser(alice)
	loc, page = b.runTest(url.Values{"csrf": {token}, "login": {aliceLogin}})
	rep = b.report(loc)
	tok := rep.Accounts[0].Steps[1]
	if rep.OK || tok.Name != "token" || tok.Status != check.StatusFail || tok.Problem == nil || tok.Problem.Cause == "" || tok.Problem.Fix == "" {
		t.Fatalf("after the revocation: %+v", rep)
	}
	for _, s := range []string{"A step failed", "<b>Cause:</b> " + htmlEscape(tok.Problem.Cause), "<b>Fix:</b> " + htmlEscape(tok.Problem.Fix), "AADSTS700082"} {
		if !strings.Contains(page.body, s) {
			t.Errorf("the failed test page lacks %q:\n%s", s, page.body)
		}
	}
}

// TestTestAll: Test all runs every account in order; an identity that is
// not signed in fails its token step with the fix, and the others are
// not held up.
func TestTestAll(t *testing.T) {
	r := newRig(t, rigOptions{})
	b := r.browser()
	token := b.signIn()
	loc, page := b.runTest(url.Values{"csrf": {token}, "all": {"1"}})
	rep := b.report(loc)
	if rep.OK || len(rep.Accounts) != 3 {
		t.Fatalf("report %+v", rep)
	}
	if !strings.Contains(page.body, `name="all" value="1">`) || !strings.Contains(page.body, "Test again") {
		t.Errorf("no Test again for all accounts:\n%s", page.body)
	}
	for i, login := range []string{aliceLogin, "erp-bob", appLogin} {
		if rep.Accounts[i].Login != login || !strings.Contains(page.body, "<h2>"+login+" ") {
			t.Errorf("account %d: %s, want %s", i, rep.Accounts[i].Login, login)
		}
	}
	if s := rep.Accounts[0].Steps[1]; s.Status != check.StatusFail || !strings.Contains(s.Problem.Fix, "xoauthd login "+alice) {
		t.Errorf("token step of a signed-out identity: %+v", s)
	}
}

// TestTestRefusals: a send-test address that is not one, an unknown
// account, an unknown run.
func TestTestRefusals(t *testing.T) {
	r := newRig(t, rigOptions{})
	b := r.browser()
	token := b.signIn()
	if a := b.post("/test", url.Values{"csrf": {token}, "login": {aliceLogin}, "send_to": {"Someone <a@b.test>"}}); a.code != http.StatusBadRequest || !strings.Contains(a.body, "not a plain e-mail address") {
		t.Errorf("bad send_to: %d\n%s", a.code, a.body)
	}
	if a := b.post("/test", url.Values{"csrf": {token}, "login": {"nobody"}}); a.code != http.StatusNotFound {
		t.Errorf("unknown account: %d", a.code)
	}
	for _, p := range []string{"/test/unknown", "/test/unknown/report.json"} {
		if a := b.get(p); a.code != http.StatusNotFound {
			t.Errorf("GET %s: %d", p, a.code)
		}
	}
}

// TestAppTokenState: a client-credentials identity shows whether the token
// manager holds an app-only token and until when; Test gets one.
func TestAppTokenState(t *testing.T) {
	r := newRig(t, rigOptions{manager: true})
	b := r.browser()
	token := b.signIn()
	if home := b.get("/"); !strings.Contains(home.body, "None is held now") {
		t.Fatalf("before any app token:\n%s", home.body)
	}
	loc, _ := b.runTest(url.Values{"csrf": {token}, "login": {appLogin}})
	if s := b.report(loc).Accounts[0].Steps[1]; s.Name != "token" || s.Status != check.StatusPass {
		t.Fatalf("token step of the app: %+v", s)
	}
	if home := b.get("/"); !strings.Contains(home.body, "The app-only token in use expires") {
		t.Fatalf("after Test:\n%s", home.body)
	}
}
