package pop3front

import (
	"bufio"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/proxy"
)

// withTLS sets local TLS on the front.
func withTLS(server *tls.Config, implicit, plaintextLogin bool) harnessOption {
	return func(o *Options, _ *proxy.Server, _ *harness) {
		o.TLS, o.ImplicitTLS, o.AllowPlaintextLogin = server, implicit, plaintextLogin
	}
}

// upgrade runs the client side of a TLS handshake on c.
func (c *client) upgrade(cfg *tls.Config) {
	c.t.Helper()
	if n := c.r.Buffered(); n > 0 {
		c.t.Fatalf("%d bytes arrived before the handshake", n)
	}
	tc := tls.Client(c.conn, cfg)
	c.conn.SetDeadline(time.Now().Add(ioTimeout))
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
}

// capa sends CAPA and returns the capability lines.
func (c *client) capa() []string {
	c.t.Helper()
	c.cmd("CAPA", "+OK Capability list follows")
	return strings.Split(strings.TrimSuffix(string(c.multiline()), "\r\n"), "\r\n")
}

func hasCapa(caps []string, name string) bool {
	for _, c := range caps {
		if c == name || strings.HasPrefix(c, name+" ") {
			return true
		}
	}
	return false
}

// TestSTLS logs in after STLS on a listener that needs TLS for logins:
// before STLS, CAPA offers only STLS to log in and USER, PASS and AUTH are
// refused without a credential check.
func TestSTLS(t *testing.T) {
	server, client := testkit.TLSPair(t)
	h := newHarness(t, withTLS(server, false, false))
	c := h.dialGreeted(t)
	caps := c.capa()
	if !hasCapa(caps, "STLS") || hasCapa(caps, "USER") || hasCapa(caps, "SASL") {
		t.Fatalf("CAPA before STLS: %q, want STLS and no USER or SASL", caps)
	}
	refused := strings.TrimSuffix(replyLoginDisabled, "\r\n")
	c.cmd("USER alice", refused)
	c.cmd("AUTH PLAIN "+b64("\x00alice\x00"+alicePassword), refused)
	if h.auth.callCount() != 0 {
		t.Fatalf("%d credential checks before TLS", h.auth.callCount())
	}
	c.cmd("STLS", strings.TrimSuffix(replyBeginTLS, "\r\n"))
	c.upgrade(client)
	caps = c.capa()
	if hasCapa(caps, "STLS") || !hasCapa(caps, "USER") || !hasCapa(caps, "SASL") {
		t.Fatalf("CAPA after STLS: %q", caps)
	}
	c.login()
	c.cmd("STAT", "+OK 2 53")
	c.cmd("QUIT", "+OK Bye (2 messages left)")
	c.expectClosed()
	h.close()
	if logs := h.logs.String(); !strings.Contains(logs, `reason="login before STLS`) || !strings.Contains(logs, "login=alice") {
		t.Errorf("no audit line for the refused login:\n%s", logs)
	}
}

// TestImplicitTLS logs in on a POP3S-style listener.
func TestImplicitTLS(t *testing.T) {
	server, client := testkit.TLSPair(t)
	h := newHarness(t, withTLS(server, true, false))
	c := h.dial(t)
	c.upgrade(client)
	c.expect(strings.TrimSuffix(greeting, "\r\n"))
	if caps := c.capa(); hasCapa(caps, "STLS") || !hasCapa(caps, "USER") {
		t.Fatalf("CAPA over implicit TLS: %q", caps)
	}
	c.cmd("STLS", strings.TrimSuffix(replyTLSActive, "\r\n"))
	c.login()
	c.cmd("STAT", "+OK 2 53")
	c.cmd("QUIT", "+OK Bye (2 messages left)")
	c.expectClosed()
}

// TestPlaintextLoginAllowedWithTLS: on a loopback listener STLS is offered
// and logins work without it.
func TestPlaintextLoginAllowedWithTLS(t *testing.T) {
	server, _ := testkit.TLSPair(t)
	h := newHarness(t, withTLS(server, false, true))
	c := h.dialGreeted(t)
	if caps := c.capa(); !hasCapa(caps, "STLS") || !hasCapa(caps, "USER") || !hasCapa(caps, "SASL") {
		t.Fatalf("CAPA: %q", caps)
	}
	c.login()
}

// TestSTLSDiscardsPlaintextInjection: commands sent in plaintext behind
// STLS, before the handshake, are dropped (CVE-2011-0411).
func TestSTLSDiscardsPlaintextInjection(t *testing.T) {
	server, client := testkit.TLSPair(t)
	h := newHarness(t, withTLS(server, false, false))
	c := h.dialGreeted(t)
	c.write("STLS\r\nUSER alice\r\nPASS " + alicePassword + "\r\n")
	c.expect(strings.TrimSuffix(replyBeginTLS, "\r\n"))
	c.upgrade(client)
	c.capa() // the first reply over TLS is CAPA's, not USER's
	c.cmd("PASS "+alicePassword, strings.TrimSuffix(replyNoUser, "\r\n"))
	if h.auth.callCount() != 0 {
		t.Fatalf("the injected login was run (%d credential checks)", h.auth.callCount())
	}
	c.cmd("QUIT", "+OK Bye")
	c.expectClosed()
	h.close()
	if logs := h.logs.String(); !strings.Contains(logs, "discarded what the client sent after STLS") {
		t.Errorf("the discarded bytes were not logged:\n%s", logs)
	}
}

func TestSTLSErrors(t *testing.T) {
	server, _ := testkit.TLSPair(t)
	t.Run("argument", func(t *testing.T) {
		h := newHarness(t, withTLS(server, false, false))
		c := h.dialGreeted(t)
		c.cmd("STLS now", strings.TrimSuffix(replySyntax, "\r\n"))
	})
	t.Run("not configured", func(t *testing.T) {
		h := newHarness(t)
		c := h.dialGreeted(t)
		c.cmd("STLS", strings.TrimSuffix(replyNotSupported, "\r\n"))
		if caps := c.capa(); hasCapa(caps, "STLS") {
			t.Fatalf("CAPA without TLS offers STLS: %q", caps)
		}
	})
	t.Run("handshake fails", func(t *testing.T) {
		h := newHarness(t, withTLS(server, false, false))
		c := h.dialGreeted(t)
		c.cmd("STLS", strings.TrimSuffix(replyBeginTLS, "\r\n"))
		c.send("USER alice") // plaintext where a ClientHello belongs
		c.expectClosed()
		h.close()
		if logs := h.logs.String(); !strings.Contains(logs, "TLS handshake with the client failed") {
			t.Errorf("failed handshake not logged:\n%s", logs)
		}
	})
	t.Run("implicit, plaintext client", func(t *testing.T) {
		h := newHarness(t, withTLS(server, true, false))
		c := h.dial(t)
		c.send("CAPA")
		c.expectClosed()
	})
	t.Run("implicit, silent client", func(t *testing.T) {
		h := newHarness(t, withTLS(server, true, false), withPreAuthTimeout(200*time.Millisecond))
		c := h.dial(t)
		c.expectClosed()
	})
}

// callCount returns how many logins were checked.
func (a *fakeAuth) callCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls
}
