package imapfront

import (
	"encoding/base64"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/proxy"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// step writes send (raw) and expects the lines of want.
type step struct {
	send string
	want []string
}

// lines is shorthand for a step's expected lines.
func lines(l ...string) []string { return l }

const (
	authFailed = "a NO [AUTHENTICATIONFAILED] Authentication failed."
	plainIR    = "\x00alice\x00wrong"
)

func TestPreAuthTranscripts(t *testing.T) {
	tests := []struct {
		name   string
		steps  []step
		closed bool   // the server closes the connection at the end
		creds  *creds // what the authenticator must have seen last
	}{
		{name: "capability", steps: []step{
			{"a CAPABILITY\r\n", lines("* CAPABILITY "+preAuthCaps, "a OK CAPABILITY completed")},
		}},
		{name: "lower case command", steps: []step{
			{"a capability\r\n", lines("* CAPABILITY "+preAuthCaps, "a OK CAPABILITY completed")},
		}},
		{name: "noop", steps: []step{{"a NOOP\r\n", lines("a OK NOOP completed")}}},
		{name: "bare LF", steps: []step{{"a NOOP\n", lines("a OK NOOP completed")}}},
		{name: "logout", steps: []step{
			{"a LOGOUT\r\n", lines("* BYE Logging out", "a OK LOGOUT completed")},
		}, closed: true},
		{name: "id nil", steps: []step{
			{"a ID NIL\r\n", lines(idResponse, "a OK ID completed")},
		}},
		{name: "id list", steps: []step{
			{`a ID ("name" "mutt" "version" NIL)` + "\r\n", lines(idResponse, "a OK ID completed")},
		}},
		{name: "id empty list", steps: []step{
			{"a NOOP\r\n", lines("a OK NOOP completed")},
			{"b ID ()\r\n", lines(idResponse, "b OK ID completed")},
		}},
		{name: "id odd list", steps: []step{
			{"a NOOP\r\n", lines("a OK NOOP completed")},
			{`b ID ("name")` + "\r\n", lines("b BAD Invalid ID arguments")},
		}},
		{name: "arguments to noop", steps: []step{
			{"a NOOP\r\n", lines("a OK NOOP completed")},
			{"b NOOP x\r\n", lines("b BAD NOOP takes no arguments")},
		}},
		{name: "login atoms", steps: []step{
			{"a LOGIN alice wrong\r\n", lines(authFailed)},
		}, creds: &creds{"alice", "wrong"}},
		{name: "login atom with bracket and 8-bit", steps: []step{
			{"a LOGIN alice p]ß\r\n", lines(authFailed)},
		}, creds: &creds{"alice", "p]ß"}},
		{name: "login quoted with escapes", steps: []step{
			{`a LOGIN "al ice" "p\"w\\d"` + "\r\n", lines(authFailed)},
		}, creds: &creds{"al ice", `p"w\d`}},
		{name: "login empty quoted", steps: []step{
			{`a LOGIN "" ""` + "\r\n", lines(authFailed)},
		}, creds: &creds{"", ""}},
		{name: "login literals", steps: []step{
			{"a LOGIN {5}\r\n", lines(strings.TrimSuffix(continueLiteral, "\r\n"))},
			{"alice {7}\r\n", lines(strings.TrimSuffix(continueLiteral, "\r\n"))},
			{"p w\r\n\"x\r\n", lines(authFailed)},
		}, creds: &creds{"alice", "p w\r\n\"x"}},
		{name: "login non-synchronizing literals in one write", steps: []step{
			{"a LOGIN {5+}\r\nalice {5+}\r\nwrong\r\n", lines(authFailed)},
		}, creds: &creds{"alice", "wrong"}},
		{name: "login mixed", steps: []step{
			{"a LOGIN {5+}\r\nalice \"wrong\"\r\n", lines(authFailed)},
		}, creds: &creds{"alice", "wrong"}},
		{name: "login wrong argument count", steps: []step{
			{"a NOOP\r\n", lines("a OK NOOP completed")},
			{"b LOGIN alice\r\n", lines("b BAD LOGIN needs a user name and a password")},
		}},
		{name: "login with a list", steps: []step{
			{"a NOOP\r\n", lines("a OK NOOP completed")},
			{"b LOGIN (alice) x\r\n", lines("b BAD LOGIN needs a user name and a password")},
		}},
		{name: "bad escape", steps: []step{
			{"a NOOP\r\n", lines("a OK NOOP completed")},
			{`b LOGIN "a\b" x` + "\r\n", lines("b BAD Invalid escape in quoted string")},
		}},
		{name: "unterminated quote", steps: []step{
			{"a NOOP\r\n", lines("a OK NOOP completed")},
			{`b LOGIN "alice x` + "\r\n", lines("b BAD Unterminated quoted string")},
		}},
		{name: "trailing space", steps: []step{
			{"a NOOP\r\n", lines("a OK NOOP completed")},
			{"b NOOP \r\n", lines("b BAD Trailing space")},
		}},
		{name: "empty line", steps: []step{
			{"a NOOP\r\n", lines("a OK NOOP completed")},
			{"\r\n", lines("* BAD Invalid tag")},
		}},
		{name: "plain initial response", steps: []step{
			{"a AUTHENTICATE PLAIN " + b64(plainIR) + "\r\n", lines(authFailed)},
		}, creds: &creds{"alice", "wrong"}},
		{name: "plain continuation", steps: []step{
			{"a AUTHENTICATE PLAIN\r\n", lines("+ ")},
			{b64(plainIR) + "\r\n", lines(authFailed)},
		}, creds: &creds{"alice", "wrong"}},
		{name: "plain without padding", steps: []step{
			{"a AUTHENTICATE plain " + strings.TrimRight(b64("\x00alice\x00wrong1"), "=") + "\r\n", lines(authFailed)},
		}, creds: &creds{"alice", "wrong1"}},
		{name: "plain authzid equal", steps: []step{
			{"a AUTHENTICATE PLAIN " + b64("alice\x00alice\x00wrong") + "\r\n", lines(authFailed)},
		}, creds: &creds{"alice", "wrong"}},
		{name: "plain authzid other", steps: []step{
			{"a AUTHENTICATE PLAIN " + b64("bob\x00alice\x00secret") + "\r\n",
				lines("a NO [AUTHORIZATIONFAILED] Authorization identity not supported.")},
		}},
		{name: "plain empty initial response", steps: []step{
			{"a AUTHENTICATE PLAIN =\r\n", lines("a BAD Invalid PLAIN response")},
		}},
		{name: "plain cancelled", steps: []step{
			{"a AUTHENTICATE PLAIN\r\n", lines("+ ")},
			{"*\r\n", lines("a BAD Authentication cancelled")},
			{"b NOOP\r\n", lines("b OK NOOP completed")},
		}},
		{name: "plain invalid base64", steps: []step{
			{"a AUTHENTICATE PLAIN\r\n", lines("+ ")},
			{"!!!\r\n", lines("a BAD Invalid base64 in SASL response")},
		}},
		{name: "sasl login", steps: []step{
			{"a AUTHENTICATE LOGIN\r\n", lines(promptUsername)},
			{b64("alice") + "\r\n", lines(promptPassword)},
			{b64("wrong") + "\r\n", lines(authFailed)},
		}, creds: &creds{"alice", "wrong"}},
		{name: "sasl login initial response", steps: []step{
			{"a AUTHENTICATE LOGIN " + b64("alice") + "\r\n", lines(promptPassword)},
			{b64("wrong") + "\r\n", lines(authFailed)},
		}, creds: &creds{"alice", "wrong"}},
		{name: "sasl login empty password", steps: []step{
			{"a AUTHENTICATE LOGIN " + b64("alice") + "\r\n", lines(promptPassword)},
			{"\r\n", lines(authFailed)},
		}, creds: &creds{"alice", ""}},
		{name: "sasl login cancelled", steps: []step{
			{"a AUTHENTICATE LOGIN\r\n", lines(promptUsername)},
			{b64("alice") + "\r\n", lines(promptPassword)},
			{"*\r\n", lines("a BAD Authentication cancelled")},
		}},
		{name: "unsupported mechanism", steps: []step{
			{"a AUTHENTICATE CRAM-MD5\r\n", lines("a NO Unsupported authentication mechanism")},
		}},
		{name: "authenticate without mechanism", steps: []step{
			{"a NOOP\r\n", lines("a OK NOOP completed")},
			{"b AUTHENTICATE\r\n", lines("b BAD AUTHENTICATE needs a mechanism and at most an initial response")},
		}},
		{name: "unknown first command", steps: []step{
			{"a FOO\r\n", lines("* BYE Unknown command")},
		}, closed: true},
		{name: "http first line", steps: []step{
			{"GET / HTTP/1.1\r\n", lines("* BYE Unknown command")},
		}, closed: true},
		{name: "garbage first line", steps: []step{
			{"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n", lines("* BYE Invalid tag")},
		}, closed: true},
		{name: "mailbox command before login", steps: []step{
			{"a NOOP\r\n", lines("a OK NOOP completed")},
			{"b SELECT INBOX\r\n", lines("b BAD Unknown command or not allowed before login")},
		}},
		{name: "starttls without local tls", steps: []step{
			{"a NOOP\r\n", lines("a OK NOOP completed")},
			{"b STARTTLS\r\n", lines("b " + replyNoLocalTLS)},
		}},
		{name: "too many errors", steps: []step{
			{"a NOOP\r\n", lines("a OK NOOP completed")},
			{"b FOO\r\n", lines("b BAD Unknown command or not allowed before login")},
			{"c SELECT INBOX\r\n", lines("c BAD Unknown command or not allowed before login")},
			{"d BAR\r\n", lines("d BAD Unknown command or not allowed before login", "* BYE Too many errors")},
		}, closed: true},
		{name: "too many failed logins", steps: []step{
			{"a LOGIN alice x\r\n", lines(authFailed)},
			{"a LOGIN alice y\r\n", lines(authFailed)},
			{"a LOGIN alice z\r\n", lines(authFailed, "* BYE Too many failed logins")},
		}, closed: true},
		{name: "line too long", steps: []step{
			{"a NOOP\r\n", lines("a OK NOOP completed")},
			{"b LOGIN " + strings.Repeat("x", maxLineLength) + "\r\n", lines("* BYE Line too long")},
		}, closed: true},
		{name: "longest line", steps: []step{
			{"a LOGIN alice " + strings.Repeat("x", maxLineLength-len("a LOGIN alice \r\n")) + "\r\n", lines(authFailed)},
		}},
		{name: "literal too big", steps: []step{
			{"a NOOP\r\n", lines("a OK NOOP completed")},
			{"b LOGIN {4097}\r\n", lines("b BAD [TOOBIG] Literal too big")},
			{"c NOOP\r\n", lines("c OK NOOP completed")},
		}},
		{name: "literal length overflow", steps: []step{
			{"a NOOP\r\n", lines("a OK NOOP completed")},
			{"b LOGIN {99999999999999999999}\r\n", lines("b BAD Literal length too long")},
		}},
		{name: "non-synchronizing literal too big", steps: []step{
			{"a NOOP\r\n", lines("a OK NOOP completed")},
			{"b LOGIN {4097+}\r\n", lines("* BYE Literal too big")},
		}, closed: true},
		{name: "largest literal", steps: []step{
			{"a LOGIN alice {4096+}\r\n" + strings.Repeat("x", maxLiteralSize) + "\r\n", lines(authFailed)},
		}},
		{name: "too many literals", steps: []step{
			{"a NOOP\r\n", lines("a OK NOOP completed")},
			{"a ID ({1+}\r\na {1+}\r\nb {1+}\r\nc {1+}\r\nd {1}\r\n", lines("a BAD [TOOBIG] Too many literals")},
		}},
		{name: "syntax error before a non-synchronizing literal", steps: []step{
			{"a NOOP\r\n", lines("a OK NOOP completed")},
			{"b LOGIN \"x {3+}\r\n", lines("* BYE Unterminated quoted string")},
		}, closed: true},
		{name: "nul in literal", steps: []step{
			{"a NOOP\r\n", lines("a OK NOOP completed")},
			{"b LOGIN {3+}\r\na\x00b x\r\n", lines("* BYE NUL in literal")},
		}, closed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			auth := &fakeAuth{}
			tok := &fakeTokens{token: "t"}
			f := startFront(t, Options{Gateway: &proxy.Gateway{Auth: auth, Tokens: tok, Upstream: noUpstream}})
			c := f.dial()
			for _, st := range tt.steps {
				c.send(st.send)
				c.expect(st.want...)
			}
			if tt.closed {
				c.expectClosed()
			} else {
				c.send("z NOOP\r\n")
				c.expect("z OK NOOP completed")
			}
			if tt.creds != nil {
				if got, _ := auth.last(); got != *tt.creds {
					t.Errorf("authenticator got %+v, want %+v", got, *tt.creds)
				}
			}
			if n := tok.tokens.Load(); n != 0 {
				t.Errorf("%d token requests before a good local login", n)
			}
			if strings.Contains(f.logs.String(), "wrong") {
				t.Errorf("a password reached the log:\n%s", f.logs)
			}
		})
	}
}

// noUpstream fails the test's login paths that must not get that far.
func noUpstream(proxy.Account) (*proxy.Dialer, error) {
	return nil, errNoUpstreamInTest
}

var errNoUpstreamInTest = &parseError{msg: "no upstream in this test"}

// TestLiteralSplitAcrossWrites sends a literal's bytes in several writes,
// waiting for the continuation before the first.
func TestLiteralSplitAcrossWrites(t *testing.T) {
	auth := &fakeAuth{}
	f := startFront(t, Options{Gateway: &proxy.Gateway{Auth: auth, Tokens: &fakeTokens{}, Upstream: noUpstream}})
	c := f.dial()
	c.send("a LOGIN {5}\r\n")
	c.expect("+ Ready for literal data")
	for _, part := range []string{"al", "i", "ce {5+}\r", "\nwr", "ong", "\r", "\n"} {
		c.send(part)
	}
	c.expect(authFailed)
	if got, _ := auth.last(); got != (creds{"alice", "wrong"}) {
		t.Errorf("authenticator got %+v", got)
	}
}

func TestPreAuthTimeout(t *testing.T) {
	f := startFront(t, Options{PreAuthTimeout: 200 * time.Millisecond})
	c := f.dial()
	c.expect("* BYE " + autologout)
	c.expectClosed()
}

// TestSlowClient sends one byte at a time, never finishing a line: the
// pre-auth deadline ends the session, not the client.
func TestSlowClient(t *testing.T) {
	f := startFront(t, Options{PreAuthTimeout: 300 * time.Millisecond})
	c := f.dial()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		if _, err := c.c.Write([]byte("a LOGIN ")); err != nil {
			return
		}
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := c.c.Write([]byte("x")); err != nil {
					return
				}
			}
		}
	}()
	c.expect("* BYE " + autologout)
	c.expectClosed()
	close(stop)
	<-done
}

// TestEndlessLine sends bytes without a line end until the server closes:
// it must close after a bounded amount, not buffer everything.
func TestEndlessLine(t *testing.T) {
	f := startFront(t, Options{})
	c := f.dial()
	const limit = 256 << 20 // far more than any socket buffers
	written := make(chan int64, 1)
	go func() {
		chunk := []byte(strings.Repeat("x", 64<<10))
		var n int64
		for n < limit {
			m, err := c.c.Write(chunk)
			n += int64(m)
			if err != nil {
				break
			}
		}
		written <- n
	}()
	c.expect("* BYE Line too long")
	c.expectClosed()
	if n := <-written; n >= limit {
		t.Errorf("server accepted %d bytes of one line without closing", n)
	}
}

func TestRefuse(t *testing.T) {
	server, clientConn := pipeTCP(t)
	New(Options{}).Refuse(server)
	server.Close()
	c := &client{t: t, c: clientConn, br: newReader(clientConn)}
	c.expect(replyBusy)
	c.expectClosed()
}

// TestEndWhileWaiting ends a session that has not logged in at once, with
// the shutdown's BYE, when the server drains or the session's context ends:
// while the session waits for the client's next command and while it waits
// for a SASL response.
func TestEndWhileWaiting(t *testing.T) {
	for _, tc := range []struct {
		name      string
		send, got string // the client's last command and its answer
		cancel    bool   // end the context instead of draining
	}{
		{name: "drain", send: "a NOOP\r\n", got: "a OK NOOP completed"},
		{name: "drain during AUTHENTICATE", send: "a AUTHENTICATE PLAIN\r\n", got: "+ "},
		{name: "context cancel", cancel: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, clientConn := pipeTCP(t)
			ctx, cancel := contextWithCancel(t)
			defer cancel()
			drain := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				defer server.Close()
				New(Options{}).ServeConn(ctx, &proxy.Conn{Conn: server, Drain: drain})
			}()
			c := &client{t: t, c: clientConn, br: newReader(clientConn)}
			c.expect(greeting)
			if tc.send != "" {
				c.send(tc.send)
				c.expect(tc.got)
			}
			if tc.cancel {
				cancel()
			} else {
				close(drain)
			}
			c.expect("* BYE Server shutting down")
			c.expectClosed()
			<-done
		})
	}
}

// TestProxyServer serves the front through proxy.Server: a session, and a
// connection over the limit that gets the front's refusal.
func TestProxyServer(t *testing.T) {
	srv := &proxy.Server{
		Protocol: "imap",
		Handler:  New(Options{}),
		MaxConns: 1,
		OnPanic:  func(v any) { t.Errorf("panic in session: %v", v) },
		Log:      slog.New(slog.DiscardHandler),
	}
	ln, err := proxy.Listen(t.Context(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	ctx, cancel := contextWithCancel(t)
	go func() { served <- srv.Serve(ctx, ln) }()
	f := &front{t: t, addr: ln.Addr().String()}
	c1 := f.dial()
	c2 := f.dialNoGreeting()
	c2.expect(replyBusy)
	c2.expectClosed()
	c1.send("a LOGIN alice secret\r\n")
	c1.expect("a " + replyUnavailable) // Options without a gateway
	c1.send("b LOGOUT\r\n")
	c1.expect("* BYE Logging out", "b OK LOGOUT completed")
	c1.expectClosed()
	cancel()
	<-served
}
