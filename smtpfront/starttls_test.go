package smtpfront

import (
	"bufio"
	"crypto/tls"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/proxy"
)

// withLocalTLS sets local TLS on the front; insecureAuth false is a
// listener clients reach over a network (no AUTH before STARTTLS).
func withLocalTLS(server *tls.Config, implicit, insecureAuth bool) func(*Options) {
	return func(o *Options) {
		o.TLS, o.ImplicitTLS, o.AllowInsecureAuth = server, implicit, insecureAuth
	}
}

// TestGoClientTLS sends a message with go-smtp's client over STARTTLS and
// over implicit TLS, as on a listener off loopback.
func TestGoClientTLS(t *testing.T) {
	for _, implicit := range []bool{false, true} {
		name := map[bool]string{false: "STARTTLS", true: "implicit"}[implicit]
		t.Run(name, func(t *testing.T) {
			server, client := testkit.TLSPair(t)
			h := newHarness(t, withLocalTLS(server, implicit, false))
			dial := smtp.DialStartTLS
			if implicit {
				dial = smtp.DialTLS
			}
			c, err := dial(h.addr, client)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if ok, _ := c.Extension("STARTTLS"); ok {
				t.Error("STARTTLS offered over TLS")
			}
			if ok, mechs := c.Extension("AUTH"); !ok || !strings.Contains(mechs, "PLAIN") {
				t.Fatalf("AUTH over TLS: %v %q", ok, mechs)
			}
			if err := c.Auth(sasl.NewPlainClient("", testLogin, testPassword)); err != nil {
				t.Fatalf("AUTH PLAIN over TLS: %v", err)
			}
			msg := testMessage("tls-"+name, 5)
			if err := send(c, testMailbox, []string{"bob@example.net"}, msg); err != nil {
				t.Fatal(err)
			}
			if err := c.Quit(); err != nil {
				t.Fatal(err)
			}
			if got := h.up.messages(); len(got) != 1 || string(got[0].data) != string(msg) {
				t.Fatalf("upstream got %+v", got)
			}
		})
	}
}

// TestNoAuthBeforeSTARTTLS: on a listener off loopback AUTH is neither
// offered nor accepted before STARTTLS, and no credential is checked.
func TestNoAuthBeforeSTARTTLS(t *testing.T) {
	server, _ := testkit.TLSPair(t)
	h := newHarness(t, withLocalTLS(server, false, false))
	tc := h.transcript()
	ehlo := tc.cmd("EHLO client.test", "250 ")
	if !strings.Contains(ehlo, "STARTTLS") || strings.Contains(ehlo, "AUTH") {
		t.Fatalf("EHLO before TLS: %q, want STARTTLS and no AUTH", ehlo)
	}
	r := tc.cmd("AUTH PLAIN "+plainIR("", testLogin, testPassword), "")
	if !strings.HasPrefix(r, "5") {
		t.Fatalf("AUTH before STARTTLS answered %q, want a 5xx", r)
	}
	if strings.Contains(h.log.String(), "msg=login") {
		t.Fatalf("a credential check ran before TLS:\n%s", h.log)
	}
}

// TestAuthBeforeSTARTTLSOnLoopback: with AllowInsecureAuth (a loopback
// listener) STARTTLS is offered and AUTH works without it.
func TestAuthBeforeSTARTTLSOnLoopback(t *testing.T) {
	server, _ := testkit.TLSPair(t)
	h := newHarness(t, withLocalTLS(server, false, true))
	tc := h.transcript()
	ehlo := tc.cmd("EHLO client.test", "250 ")
	if !strings.Contains(ehlo, "STARTTLS") || !strings.Contains(ehlo, "AUTH PLAIN") {
		t.Fatalf("EHLO: %q, want STARTTLS and AUTH", ehlo)
	}
	tc.cmd("AUTH PLAIN "+plainIR("", testLogin, testPassword), "235")
}

// TestSTARTTLSDiscardsPlaintextInjection: commands sent in plaintext behind
// STARTTLS, before the handshake, are dropped (CVE-2011-0411).
func TestSTARTTLSDiscardsPlaintextInjection(t *testing.T) {
	server, client := testkit.TLSPair(t)
	h := newHarness(t, withLocalTLS(server, false, false))
	tc := h.transcript()
	tc.cmd("EHLO client.test", "250 ")
	tc.write("STARTTLS\r\nAUTH PLAIN " + plainIR("", testLogin, testPassword) + "\r\nMAIL FROM:<x@example.com>\r\n")
	tc.expect("220 ")
	if n := tc.r.Buffered(); n > 0 {
		t.Fatalf("%d bytes arrived before the handshake", n)
	}
	tc.handshake(client)
	// The first reply over TLS is the EHLO's: nothing answers the
	// injected AUTH or MAIL.
	tc.cmd("EHLO client.test", "250 ")
	tc.cmd("MAIL FROM:<x@example.com>", "530 ")
	if strings.Contains(h.log.String(), "msg=login") {
		t.Fatalf("the injected AUTH was run:\n%s", h.log)
	}
}

func TestTLSHandshakeFailures(t *testing.T) {
	server, _ := testkit.TLSPair(t)
	t.Run("implicit, plaintext client", func(t *testing.T) {
		h := newHarness(t, withLocalTLS(server, true, false))
		conn, err := dialTCP(h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		tc := &transcript{t: t, conn: conn, r: bufio.NewReader(conn)}
		tc.write("EHLO client.test\r\n")
		tc.expectClosed()
		h.log.waitFor(t, "TLS handshake with the client failed")
	})
	// A failed STARTTLS handshake is logged as on every other listener
	// (go-smtp answers it with 550 and logs nothing itself).
	t.Run("STARTTLS, client offers only TLS 1.0", func(t *testing.T) {
		h := newHarness(t, withLocalTLS(server, false, false))
		tc := h.transcript()
		tc.cmd("EHLO client.test", "250 ")
		tc.cmd("STARTTLS", "220 ")
		old := tls.Client(tc.conn, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10})
		old.SetDeadline(time.Now().Add(10 * time.Second))
		if err := old.Handshake(); err == nil {
			t.Fatal("a TLS 1.0 handshake succeeded")
		}
		h.log.waitFor(t, "TLS handshake with the client failed", "protocol version not supported", "TLS 1.0")
	})
	t.Run("STARTTLS, plaintext after 220", func(t *testing.T) {
		h := newHarness(t, withLocalTLS(server, false, false))
		tc := h.transcript()
		tc.cmd("EHLO client.test", "250 ")
		tc.cmd("STARTTLS", "220 ")
		tc.write("EHLO client.test\r\n")
		h.log.waitFor(t, "TLS handshake with the client failed", "does not look like a TLS handshake")
	})
	t.Run("implicit, silent client", func(t *testing.T) {
		h := newHarness(t, withLocalTLS(server, true, false), func(o *Options) { o.PreAuthTimeout = 200 * time.Millisecond })
		conn, err := dialTCP(h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		tc := &transcript{t: t, conn: conn, r: bufio.NewReader(conn)}
		tc.expectClosed()
	})
	t.Run("implicit without a configuration", func(t *testing.T) {
		// The wiring bug is logged at ERROR, which the harness's log
		// fails the test on.
		quiet := func(s *proxy.Server) { s.Log = slog.New(slog.DiscardHandler) }
		h := newHarness(t, withLocalTLS(nil, true, false), quiet)
		conn, err := dialTCP(h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		tc := &transcript{t: t, conn: conn, r: bufio.NewReader(conn)}
		if rest := tc.expectClosed(); rest != "" {
			t.Fatalf("served %q without TLS", rest)
		}
	})
}

// TestSTARTTLSWithoutLocalTLS: STARTTLS on a listener without tls: is
// refused with 502 (RFC 3207 §4: not offered, so not implemented here) and
// the session goes on.
func TestSTARTTLSWithoutLocalTLS(t *testing.T) {
	h := newHarness(t)
	tc := h.transcript()
	if ehlo := tc.cmd("EHLO client.test", "250 "); strings.Contains(ehlo, "STARTTLS") {
		t.Fatalf("EHLO without local TLS offers STARTTLS: %q", ehlo)
	}
	tc.cmd("STARTTLS", "502 5.5.1 ")
	tc.cmd("AUTH PLAIN "+plainIR("", testLogin, testPassword), "235")
}
