package imapfront

import (
	"bufio"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/xoauthd/xoauthd/internal/testkit"
)

// withTLS sets local TLS on the front's options.
func withTLS(server *tls.Config, implicit, plaintextLogin bool) func(*Options) {
	return func(o *Options) {
		o.TLS, o.ImplicitTLS, o.AllowPlaintextLogin = server, implicit, plaintextLogin
	}
}

// startTLS sends STARTTLS on c, expects the OK and upgrades c.
func (c *client) startTLS(cfg *tls.Config) {
	c.t.Helper()
	c.send("s STARTTLS\r\n")
	c.expect("s " + replyBeginTLS)
	c.upgrade(cfg)
}

// upgrade runs the client side of a TLS handshake on c.
func (c *client) upgrade(cfg *tls.Config) {
	c.t.Helper()
	if c.br.Buffered() > 0 {
		c.t.Fatalf("%d bytes arrived before the handshake", c.br.Buffered())
	}
	tc := tls.Client(c.c, cfg)
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.c, c.br = tc, bufio.NewReader(tc)
}

// greetingWith is the greeting announcing caps.
func greetingWith(caps string) string { return "* OK [CAPABILITY " + caps + "] xoauthd ready" }

// TestGoClientTLS logs in with go-imap's client over STARTTLS and over
// implicit TLS, as on a listener clients reach over a network (no plaintext
// logins), and reads the mailbox through the relay.
func TestGoClientTLS(t *testing.T) {
	for _, implicit := range []bool{false, true} {
		name := map[bool]string{false: "STARTTLS", true: "implicit"}[implicit]
		t.Run(name, func(t *testing.T) {
			server, client := testkit.TLSPair(t)
			e := newEnvWith(t, &fakeTokens{token: "good"}, withTLS(server, implicit, false))
			dial := imapclient.DialStartTLS
			if implicit {
				dial = imapclient.DialTLS
			}
			c, err := dial(e.f.addr, &imapclient.Options{TLSConfig: client})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Login(testLogin, testPassword).Wait(); err != nil {
				t.Fatalf("LOGIN over TLS: %v", err)
			}
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				t.Fatalf("SELECT through the relay: %v", err)
			}
			caps := c.Caps()
			if caps.Has(imap.CapStartTLS) || caps.Has(imap.CapLoginDisabled) {
				t.Errorf("capabilities after login still announce STARTTLS/LOGINDISABLED: %v", caps)
			}
			if err := c.Logout().Wait(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestLoginDisabledBeforeSTARTTLS: with TLS and no plaintext logins (a
// listener off loopback) LOGINDISABLED is announced instead of the
// mechanisms, and LOGIN and AUTHENTICATE are refused before any credential
// check; after STARTTLS they work.
func TestLoginDisabledBeforeSTARTTLS(t *testing.T) {
	server, client := testkit.TLSPair(t)
	e := newEnvWith(t, &fakeTokens{token: "good"}, withTLS(server, false, false))
	c := e.f.dialNoGreeting()
	c.expect(greetingWith(capsBase + " STARTTLS LOGINDISABLED"))
	c.send("a CAPABILITY\r\n")
	c.expect("* CAPABILITY "+capsBase+" STARTTLS LOGINDISABLED", "a OK CAPABILITY completed")
	c.send("b LOGIN alice secret\r\n")
	c.expect("b " + replyLoginDisabled)
	c.send("c AUTHENTICATE PLAIN\r\n") // refused before the continuation
	c.expect("c " + replyLoginDisabled)
	if _, n := e.auth.last(); n != 0 {
		t.Fatalf("%d credential checks before TLS, want none", n)
	}
	c.startTLS(client)
	c.send("d CAPABILITY\r\n")
	c.expect("* CAPABILITY "+capsBase+" "+capsAuth, "d OK CAPABILITY completed")
	c.send("e STARTTLS\r\n")
	c.expect("e BAD TLS is already active")
	c.send("f LOGIN alice secret\r\n")
	c.expect("f OK [CAPABILITY ...")
	if logs := e.f.logs.String(); !strings.Contains(logs, "reason=\"login before STARTTLS") || !strings.Contains(logs, "login=alice") {
		t.Errorf("no audit line for the refused login:\n%s", logs)
	}
}

// TestPlaintextLoginAllowedWithTLS: on a loopback listener STARTTLS is
// offered and logins work with or without it.
func TestPlaintextLoginAllowedWithTLS(t *testing.T) {
	server, _ := testkit.TLSPair(t)
	e := newEnvWith(t, &fakeTokens{token: "good"}, withTLS(server, false, true))
	c := e.f.dialNoGreeting()
	c.expect(greetingWith(capsBase + " STARTTLS " + capsAuth))
	c.send("a LOGIN alice secret\r\n")
	c.expect("a OK [CAPABILITY ...")
}

// TestSTARTTLSDiscardsPlaintextInjection: commands sent in plaintext behind
// STARTTLS, before the handshake, are dropped, never run as if sent over
// TLS (CVE-2011-0411).
func TestSTARTTLSDiscardsPlaintextInjection(t *testing.T) {
	server, client := testkit.TLSPair(t)
	e := newEnvWith(t, &fakeTokens{token: "good"}, withTLS(server, false, false))
	c := e.f.dialNoGreeting()
	c.until("* OK ")
	c.send("s STARTTLS\r\nx LOGIN alice secret\r\ny CAPABILITY\r\n")
	c.expect("s " + replyBeginTLS)
	c.upgrade(client)
	c.send("z NOOP\r\n")
	c.expect("z OK NOOP completed") // nothing for x or y first
	if _, n := e.auth.last(); n != 0 {
		t.Fatalf("the injected LOGIN was run (%d credential checks)", n)
	}
	if logs := e.f.logs.String(); !strings.Contains(logs, "discarded what the client sent after STARTTLS") {
		t.Errorf("the discarded bytes were not logged:\n%s", logs)
	}
}

func TestSTARTTLSErrors(t *testing.T) {
	server, _ := testkit.TLSPair(t)
	t.Run("arguments", func(t *testing.T) {
		e := newEnvWith(t, &fakeTokens{token: "good"}, withTLS(server, false, true))
		c := e.f.dialNoGreeting()
		c.until("* OK ")
		c.send("a STARTTLS now\r\n")
		c.expect("a BAD STARTTLS takes no arguments")
	})
	// fetchmail sends STARTTLS first whether or not it is announced: the
	// session answers it and goes on (it used to end with BYE Unknown command).
	t.Run("not configured, first command", func(t *testing.T) {
		e := newEnv(t, &fakeTokens{token: "good"})
		c := e.f.dial()
		c.send("a STARTTLS\r\n")
		c.expect("a " + replyNoLocalTLS)
		c.send("b LOGIN alice secret\r\n")
		c.until("b OK ")
	})
	t.Run("not configured, later", func(t *testing.T) {
		e := newEnv(t, &fakeTokens{token: "good"})
		c := e.f.dial()
		c.send("a NOOP\r\nb STARTTLS\r\n")
		c.expect("a OK NOOP completed", "b "+replyNoLocalTLS)
	})
	t.Run("handshake fails", func(t *testing.T) {
		e := newEnvWith(t, &fakeTokens{token: "good"}, withTLS(server, false, false))
		c := e.f.dialNoGreeting()
		c.until("* OK ")
		c.send("a STARTTLS\r\n")
		c.expect("a " + replyBeginTLS)
		c.send("b LOGIN alice secret\r\n") // plaintext where a ClientHello belongs
		c.expectClosed()
		waitLog(t, e.f, "TLS handshake with the client failed")
	})
	t.Run("implicit, plaintext client", func(t *testing.T) {
		e := newEnvWith(t, &fakeTokens{token: "good"}, withTLS(server, true, false))
		c := e.f.dialNoGreeting()
		c.send("a CAPABILITY\r\n")
		c.expectClosed()
	})
	t.Run("implicit without a configuration", func(t *testing.T) {
		e := newEnvWith(t, &fakeTokens{token: "good"}, withTLS(nil, true, false))
		c := e.f.dialNoGreeting()
		c.expectClosed()
		waitLog(t, e.f, "no TLS configuration")
	})
}

// TestImplicitTLSHandshakeBounded: a client that opens the implicit-TLS
// port and says nothing is cut off at the pre-auth deadline.
func TestImplicitTLSHandshakeBounded(t *testing.T) {
	server, _ := testkit.TLSPair(t)
	e := newEnvWith(t, &fakeTokens{token: "good"}, func(o *Options) {
		withTLS(server, true, false)(o)
		o.PreAuthTimeout = 200 * time.Millisecond
	})
	c := e.f.dialNoGreeting()
	c.expectClosed()
}

// TestTraceAfterSTARTTLS: the protocol trace shows the dialogue after
// STARTTLS in plain text (the TLS connection is traced, not the bytes under
// it), with the credentials hidden.
func TestTraceAfterSTARTTLS(t *testing.T) {
	server, clientTLS := testkit.TLSPair(t)
	e := newEnv(t, &fakeTokens{token: "good"})
	srv, addr, logs := startTracedFrontWith(t, e, withTLS(server, false, false))
	c := dialClient(t, addr)
	nc := c.c // under TLS after STARTTLS
	c.until("* OK ")
	c.startTLS(clientTLS)
	c.send("a LOGIN alice secret\r\n")
	c.until("a OK ")
	c.send("z LOGOUT\r\n")
	c.until("z OK ")
	nc.Close()
	shutdown(t, srv)
	out := logs.String()
	for _, w := range []string{`line="s STARTTLS"`, `line="a LOGIN ***"`} {
		if !strings.Contains(out, w) {
			t.Errorf("trace lacks %s:\n%s", w, out)
		}
	}
	if strings.Contains(out, testPassword) {
		t.Errorf("the password reached the trace:\n%s", out)
	}
}

// waitLog waits until the front's log contains s.
func waitLog(t *testing.T, f *front, s string) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for !strings.Contains(f.logs.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("log lacks %q:\n%s", s, f.logs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
