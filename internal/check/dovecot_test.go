//go:build linux

package check

import (
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/testupstream"
)

// TestCheckDovecot is the happy path against a real server: Dovecot with
// XOAUTH2 validated against the test IdP's key, every step passes, and
// --send-test delivers the test message into the sink.
func TestCheckDovecot(t *testing.T) {
	t.Parallel()
	e := newCheckEnv(t)
	dc := testupstream.New(t, testupstream.Options{JWTKey: e.idp.SigningKey()})
	e.server("imap", dc.IMAPAddr, dc.CAFile, "")
	e.server("pop3", dc.POP3Addr, dc.CAFile, "")
	e.server("smtp", dc.SubmissionAddr, dc.CAFile, "upstream_tls: starttls")
	e.account("erp-alice", checkAlice, "")
	e.write()
	e.login(checkAlice)
	if err := dc.Deliver(checkAlice, []byte("From: <bob@contoso.test>\r\nTo: <alice@contoso.test>\r\nSubject: waiting\r\n\r\nhello\r\n")); err != nil {
		t.Fatal(err)
	}

	r := e.report(checkAlice)
	if !r.OK {
		t.Fatalf("report %+v", r)
	}
	for _, s := range r.Accounts[0].Steps {
		if s.Status != StatusPass {
			t.Errorf("step %s: %s %q %#v", s.Name, s.Status, s.Summary, s.Problem)
		}
	}
	if im := step(t, r, "imap"); im.Messages == nil || *im.Messages != 1 {
		t.Errorf("imap step %+v", im)
	}
	if pop := step(t, r, "pop3"); pop.Messages == nil || *pop.Messages != 1 || pop.Octets == nil || *pop.Octets == 0 {
		t.Errorf("pop3 step %+v", pop)
	}
	sm := step(t, r, "smtp")
	if !strings.HasPrefix(sm.TestReply, "250 ") || sm.TLS == "" {
		t.Errorf("smtp step %+v", sm)
	}
	msgs, err := dc.Sink.WaitFor(1, 30*time.Second)
	if err != nil {
		t.Fatalf("the test message did not reach the sink: %v", err)
	}
	m := msgs[0]
	if m.From != checkAlice || len(m.To) != 1 || m.To[0] != checkAlice ||
		!strings.Contains(string(m.Data), "Subject: xoauthd check test message") {
		t.Errorf("sink got from %s to %v:\n%s", m.From, m.To, m.Data)
	}
	t.Logf("smtp test reply: %s", sm.TestReply)
}
