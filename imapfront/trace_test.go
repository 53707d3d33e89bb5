package imapfront

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/internal/xoauth2"
	"github.com/xoauthd/xoauthd/proxy"
)

func TestTraceRedactor(t *testing.T) {
	// Each step is a command (">") or a reply ("<") and what the trace shows.
	type step = testkit.TraceStep
	tests := []struct {
		name  string
		steps []step
	}{
		{"LOGIN atoms", []step{
			{"> a LOGIN alice secret", "a LOGIN ***"}, {"< a OK Logged in", "a OK Logged in"}, {"> b SELECT INBOX", "b SELECT INBOX"},
		}},
		{"LOGIN without tag or with extra spaces", []step{
			{"> LOGIN alice secret", "LOGIN ***"}, {"< * BYE Unknown command", "* BYE Unknown command"},
			{">   x   login  alice  secret", "x login ***"}, {"< x BAD no", "x BAD no"},
		}},
		{"LOGIN with synchronizing literals", []step{
			{"> a LOGIN {5}", "a LOGIN ***"}, {"< + Ready for literal data", "+ ***"},
			{"> alice {8}", "***"}, {"< + Ready for literal data", "+ ***"},
			{"> pa", "***"}, {"> ss", "***"}, // CRLF inside the literal
			{"< a NO [AUTHENTICATIONFAILED] Authentication failed.", "a NO [AUTHENTICATIONFAILED] Authentication failed."},
			{"> b NOOP", "b NOOP"},
		}},
		{"AUTHENTICATE PLAIN with initial response", []step{
			{"> a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==", "a AUTHENTICATE PLAIN ***"}, {"< a OK done", "a OK done"},
		}},
		{"AUTHENTICATE LOGIN with continuations", []step{
			{"> a authenticate login", "a authenticate login"}, {"< + VXNlcm5hbWU6", "+ ***"}, {"> YWxpY2U=", "***"},
			{"< + UGFzc3dvcmQ6", "+ ***"}, {"> *", "***"}, {"< a BAD Authentication cancelled", "a BAD Authentication cancelled"},
		}},
		{"pipelined behind LOGIN", []step{
			{"> a LOGIN alice secret", "a LOGIN ***"}, {"> b SELECT INBOX", "***"}, {"< a OK", "a OK"},
		}},
		{"BYE ends an exchange", []step{
			{"> a AUTHENTICATE PLAIN", "a AUTHENTICATE PLAIN"}, {"< + ", "+ "}, {"< * BYE Too many errors", "* BYE Too many errors"},
			{"> b NOOP", "b NOOP"},
		}},
		{"upstream XOAUTH2 with error challenge", []step{
			{"> A1 AUTHENTICATE XOAUTH2 dXNlcj1hQGIBYXV0aD1CZWFyZXIgdG9rAQE=", "A1 AUTHENTICATE XOAUTH2 ***"},
			{"< * CAPABILITY IMAP4rev1", "* CAPABILITY IMAP4rev1"},
			{"< + eyJzdGF0dXMiOiI0MDEifQ==", "+ ***"}, {"> ", "***"},
			{"< A1 NO [AUTHENTICATIONFAILED] Invalid credentials", "A1 NO [AUTHENTICATIONFAILED] Invalid credentials"},
			{"> xo1 CAPABILITY", "xo1 CAPABILITY"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &traceRedactor{}
			testkit.TraceSteps(t, r, tt.steps)
		})
	}
}

// startTracedFront serves the env's gateway through a proxy.Server with the
// protocol trace on, and returns it, its address and its log.
func startTracedFront(t *testing.T, e *env) (*proxy.Server, string, *testkit.SyncBuffer) {
	t.Helper()
	return startTracedFrontWith(t, e, nil)
}

// startTracedFrontWith is startTracedFront with the front's options changed
// by opts (nil: none).
func startTracedFrontWith(t *testing.T, e *env, opts func(*Options)) (*proxy.Server, string, *testkit.SyncBuffer) {
	t.Helper()
	logs := &testkit.SyncBuffer{}
	o := Options{Gateway: e.gateway}
	if opts != nil {
		opts(&o)
	}
	srv := &proxy.Server{
		Protocol: "imap",
		Handler:  New(o),
		Log:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Trace:    true,
		OnPanic:  func(v any) { t.Errorf("recovered panic: %v", v) },
	}
	ln, err := proxy.Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(context.Background(), ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return srv, ln.Addr().String(), logs
}

// TestTracedLogins runs logins of every form with the protocol trace on:
// the trace shows the dialogue on both sides up to the login, nothing of the
// relayed session, and neither the password nor a token, raw or in base64.
func TestTracedLogins(t *testing.T) {
	tests := []struct {
		name   string
		tok    *fakeTokens
		dialog func(c *client)
		want   []string
	}{
		{
			name: "LOGIN with literals, then a relayed command",
			tok:  &fakeTokens{token: "good"},
			dialog: func(c *client) {
				c.send("a LOGIN {5}\r\n")
				c.expect(strings.TrimSuffix(continueLiteral, "\r\n"))
				c.send("alice {6}\r\n")
				c.expect(strings.TrimSuffix(continueLiteral, "\r\n"))
				c.send("secret\r\n")
				c.until("a OK ")
				c.send("b SELECT INBOX\r\n")
				c.until("b OK ")
			},
			want: []string{`peer=client dir=in line="a LOGIN ***"`, `peer=client dir=in line=***`,
				`peer=upstream dir=out line="a AUTHENTICATE XOAUTH2`, `peer=upstream dir=in line="a OK`},
		},
		{
			name: "AUTHENTICATE PLAIN with initial response",
			tok:  &fakeTokens{token: "good"},
			dialog: func(c *client) {
				c.send("a AUTHENTICATE PLAIN " + b64("\x00alice\x00secret") + "\r\n")
				c.until("a OK ")
			},
			want: []string{`line="a AUTHENTICATE PLAIN ***"`},
		},
		{
			name: "AUTHENTICATE LOGIN",
			tok:  &fakeTokens{token: "good"},
			dialog: func(c *client) {
				c.send("a AUTHENTICATE LOGIN\r\n")
				c.expect(promptUsername)
				c.send(b64("alice") + "\r\n")
				c.expect(promptPassword)
				c.send(b64("secret") + "\r\n")
				c.until("a OK ")
			},
			want: []string{`line="a AUTHENTICATE LOGIN"`, `peer=client dir=out line="+ ***"`},
		},
		{
			name:   "stale token: error challenge and retry",
			tok:    &fakeTokens{token: "stale", refreshed: "fresh"},
			dialog: func(c *client) { c.send("a LOGIN alice secret\r\n"); c.until("a OK ") },
			want:   []string{`peer=upstream dir=in line="+ ***"`, `peer=upstream dir=out line=***`},
		},
	}
	secrets := []string{testPassword, "good", "stale", "fresh", b64("\x00alice\x00secret"), b64("secret"),
		xoauth2.Encode(testMailbox, "good"), xoauth2.Encode(testMailbox, "stale"), xoauth2.Encode(testMailbox, "fresh")}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.tok)
			srv, addr, logs := startTracedFront(t, e)
			c := dialClient(t, addr)
			c.expect(greeting)
			tt.dialog(c)
			c.send("z LOGOUT\r\n")
			c.until("z OK ")
			c.expectClosed()
			c.c.Close()
			shutdown(t, srv)
			out := logs.String()
			if !strings.Contains(out, "msg=closed") {
				t.Error("no closed line: the session was not relayed")
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("log lacks %s", w)
				}
			}
			if strings.Contains(out, "b SELECT") || strings.Contains(out, "z LOGOUT") {
				t.Error("the relayed session was traced")
			}
			for _, s := range secrets {
				if strings.Contains(out, s) {
					t.Errorf("log contains the secret %q", s)
				}
			}
			if t.Failed() {
				t.Logf("log:\n%s", out)
			}
		})
	}
}

// shutdown stops srv; it returns when every session has ended and logged
// all it logs.
func shutdown(t *testing.T, srv *proxy.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}
