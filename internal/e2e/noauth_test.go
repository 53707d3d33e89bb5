package e2e

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// TestSMTPNoAuthToDovecot: a listener with no_auth: lets a client on
// 127.0.0.1 send without AUTH as alice's account, refuses MAIL without AUTH
// from 127.0.0.3, still takes AUTH there, and swaks and curl without
// credentials deliver through it.
func TestSMTPNoAuthToDovecot(t *testing.T) {
	r := newRigWith(t, rigOptions{smtpYAML: `no_auth: {account: ` + aliceLogin + `, from: [127.0.0.1/32]}`})

	// A go-smtp client on 127.0.0.1, without AUTH.
	msg := message("no-auth-go-smtp", 4000)
	before := len(r.dc.Sink.Messages())
	c := dialSMTPFrom(t, r.smtp, "127.0.0.1")
	if err := c.SendMail(alice, []string{bob}, bytes.NewReader(msg)); err != nil {
		t.Fatalf("sending without AUTH from 127.0.0.1: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	got, err := r.dc.Sink.WaitFor(before+1, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m := got[before]; !bytes.Equal(stripReceived(m.Data), msg) || m.From != alice || len(m.To) != 1 || m.To[0] != bob {
		t.Fatalf("sink has %d bytes from %s to %v, want the %d sent bytes unchanged from %s to %s", len(m.Data), m.From, m.To, len(msg), alice, bob)
	}
	r.expectLog(t, "result=success login="+aliceLogin, "mech=none unauthenticated=true no_auth_rule=127.0.0.1/32")

	// From 127.0.0.3, outside from:, MAIL without AUTH is refused; AUTH
	// still works on the same listener.
	c = dialSMTPFrom(t, r.smtp, "127.0.0.3")
	err = c.Mail(alice, nil)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 530 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 0}) {
		t.Fatalf("MAIL without AUTH from 127.0.0.3: %v, want 530 5.7.0", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", bobLogin, bobPass)); err != nil {
		t.Fatalf("AUTH from 127.0.0.3: %v", err)
	}
	before = len(r.dc.Sink.Messages())
	if err := c.SendMail(bob, []string{alice}, bytes.NewReader(message("with-auth", 100))); err != nil {
		t.Fatalf("sending with AUTH from 127.0.0.3: %v", err)
	}
	c.Quit()
	if got, err := r.dc.Sink.WaitFor(before+1, 30*time.Second); err != nil || got[before].From != bob {
		t.Fatalf("message sent with AUTH: %v", err)
	}

	// swaks and curl, neither given credentials.
	file := filepath.Join(t.TempDir(), "scan.eml")
	for _, tool := range []string{"swaks", "curl"} {
		msg := []byte("From: " + alice + "\r\nTo: " + bob + "\r\nSubject: scan by " + tool + "\r\nMessage-ID: <scan-" + tool + "@contoso.test>\r\n\r\nscanned page\r\n")
		content := msg
		if tool == "swaks" {
			// swaks ends the data with CRLF itself.
			content = bytes.TrimSuffix(msg, []byte("\r\n"))
		}
		if err := os.WriteFile(file, content, 0o600); err != nil {
			t.Fatal(err)
		}
		before := len(r.dc.Sink.Messages())
		switch tool {
		case "swaks":
			swaks(t, "--server", r.smtp, "--from", alice, "--to", bob, "--data", "@"+file)
		case "curl":
			if _, err := curl(t, "smtp://"+r.smtp, "--mail-from", alice, "--mail-rcpt", bob, "-T", file); err != nil {
				t.Fatal(err)
			}
		}
		got, err := r.dc.Sink.WaitFor(before+1, 30*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
		if !bytes.Equal(stripReceived(got[before].Data), msg) {
			t.Errorf("%s: sink has %q, want %q", tool, stripReceived(got[before].Data), msg)
		}
	}
}

// dialSMTPFrom connects to addr from the loopback address src and says EHLO.
func dialSMTPFrom(t *testing.T, addr, src string) *smtp.Client {
	t.Helper()
	conn, err := dialFrom(addr, net.ParseIP(src))
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClient(conn)
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("scanner.contoso.test"); err != nil {
		t.Fatal(err)
	}
	return c
}

// swaks runs swaks with args and fails the test when it fails.
func swaks(t *testing.T, args ...string) {
	t.Helper()
	p, err := exec.LookPath("swaks")
	if err != nil {
		if testing.Short() {
			t.Skip("swaks not installed")
		}
		t.Fatal("swaks is needed by the end-to-end tests: apt-get install swaks")
	}
	out, err := exec.Command(p, append([]string{"--timeout", "60", "--silent", "2"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("swaks %s: %v:\n%s", strings.Join(args, " "), err, out)
	}
}
