package smtpfront

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/proxy"
)

// scannerAccount is the account no_auth maps unauthenticated clients to.
var scannerAccount = proxy.Account{Login: "scanner", Identity: "scanner@example.com", Mailbox: "scanner@example.com", Provider: "m365"}

// admitOnly is a NoAuthFunc admitting clients from one address.
func admitOnly(rule string) func(*Options) {
	p := netip.MustParsePrefix(rule)
	return func(o *Options) {
		o.NoAuth = func(remote netip.Addr) (proxy.Account, string, bool) {
			if !p.Contains(remote.Unmap()) {
				return proxy.Account{}, "", false
			}
			return scannerAccount, rule, true
		}
	}
}

// clientFrom dials the front from the loopback address src and says EHLO.
func (h *harness) clientFrom(src string) *smtp.Client {
	h.t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	conn, err := d.Dial("tcp", h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	c := smtp.NewClient(conn)
	h.t.Cleanup(func() { c.Close() })
	if err := c.Hello("scanner.test"); err != nil {
		h.t.Fatal(err)
	}
	return c
}

func TestNoAuthSendsAsTheAccount(t *testing.T) {
	h := newHarness(t, admitOnly("127.0.0.1/32"))
	c := h.clientFrom("127.0.0.1")
	msg := testMessage("scan-1", 30)
	for i := range 2 {
		if err := send(c, "scanner@example.com", []string{"bob@example.net"}, msg); err != nil {
			t.Fatalf("message %d without AUTH: %v", i, err)
		}
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	got := h.up.messages()
	if len(got) != 2 || !bytes.Equal(got[0].data, msg) || !bytes.Equal(got[1].data, msg) || got[0].from != "scanner@example.com" {
		t.Fatalf("upstream got %d messages, want 2 unchanged ones", len(got))
	}
	h.up.set(func(f *fakeUpstream) {
		if len(f.users) != 1 || f.users[0] != scannerAccount.Identity {
			t.Errorf("upstream logins %v, want one as %s", f.users, scannerAccount.Identity)
		}
	})
	h.log.waitFor(t, "result=success login=scanner identity=scanner@example.com",
		"mech=none unauthenticated=true no_auth_rule=127.0.0.1/32", "messages=2 bytes=")
}

func TestNoAuthRefusedOutsideItsNetworks(t *testing.T) {
	h := newHarness(t, admitOnly("127.0.0.1/32"))
	c := h.clientFrom("127.0.0.3")
	err := c.Mail("scanner@example.com", nil)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 530 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 0}) || se.Message != "Authentication required" {
		t.Fatalf("MAIL without AUTH from 127.0.0.3: %v, want 530 5.7.0 Authentication required", err)
	}
	// AUTH still works on the same listener and session.
	if err := c.Auth(sasl.NewPlainClient("", testLogin, testPassword)); err != nil {
		t.Fatalf("AUTH after the refusal: %v", err)
	}
	if err := send(c, "billing@example.com", []string{"bob@example.net"}, testMessage("after-auth", 3)); err != nil {
		t.Fatal(err)
	}
	if n := len(h.up.messages()); n != 1 {
		t.Fatalf("upstream has %d messages, want 1", n)
	}
	h.log.waitFor(t, "MAIL without AUTH refused", "remote_addr=127.0.0.3")
	if strings.Contains(h.log.String(), "unauthenticated=true") {
		t.Error("a refused client was logged in without AUTH")
	}
}

func TestNoAuthOffByDefault(t *testing.T) {
	h := newHarness(t)
	tc := h.transcript()
	tc.cmd("EHLO client.test", "250 ")
	tc.cmd("MAIL FROM:<a@example.com>", "530 5.7.0 Authentication required")
}

// TestNoAuthUpstreamUnavailable: when the account's session cannot be
// opened, the client is told to try again later (its message stays
// queued), and the audit line says why.
func TestNoAuthUpstreamUnavailable(t *testing.T) {
	h := newHarness(t, admitOnly("127.0.0.0/8"))
	h.tokens.setErr(errors.New("identity provider down"))
	c := h.clientFrom("127.0.0.1")
	err := c.Mail("scanner@example.com", nil)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 7, 0}) {
		t.Fatalf("MAIL with the upstream login failing: %v, want 451 4.7.0", err)
	}
	h.log.waitFor(t, "result=error login=scanner", "unauthenticated=true no_auth_rule=127.0.0.0/8", "identity provider down")
	// Once the cause is gone, the next MAIL in the same session goes through.
	h.tokens.setErr(nil)
	if err := send(c, "scanner@example.com", []string{"bob@example.net"}, testMessage("retry", 2)); err != nil {
		t.Fatalf("retry: %v", err)
	}
}
