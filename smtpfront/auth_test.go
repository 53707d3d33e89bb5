package smtpfront

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/proxy"
	"github.com/xoauthd/xoauthd/tokens"
)

func TestEHLOExtensions(t *testing.T) {
	h := newHarness(t)
	tc := h.transcript()
	ehlo := tc.cmd("EHLO client.test", "250 ")
	for _, want := range []string{"250-PIPELINING", "250-8BITMIME", "250-ENHANCEDSTATUSCODES", "250-AUTH PLAIN LOGIN",
		fmt.Sprintf("SIZE %d", DefaultMaxMessageBytes)} {
		if !strings.Contains(ehlo, want) {
			t.Errorf("fresh EHLO lacks %q:\n%s", want, ehlo)
		}
	}
	if strings.Contains(ehlo, "SMTPUTF8") {
		t.Errorf("fresh EHLO offers SMTPUTF8 before the upstream is known:\n%s", ehlo)
	}

	// A login teaches the front the upstream's extensions; later sessions
	// advertise them.
	h.loggedIn().Quit()
	ehlo = h.transcript().cmd("EHLO client.test", "250 ")
	if !strings.Contains(ehlo, fmt.Sprintf("SIZE %d\r\n", 30<<20)) || !strings.Contains(ehlo, "SMTPUTF8") {
		t.Errorf("EHLO after a login does not follow the upstream (SIZE 31457280, SMTPUTF8):\n%s", ehlo)
	}
}

// TestEHLOFirstSessionAfterStart: with its upstreams given, the front
// probes their EHLO at start, so the very first session is offered
// SMTPUTF8 and the upstream's SIZE and can send to an internationalised
// address (it used to get them only after a first login).
func TestEHLOFirstSessionAfterStart(t *testing.T) {
	for _, mode := range []upstreamMode{upstreamStartTLS, upstreamImplicit} {
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			h := newHarness(t, probeAtStart{}, mode)
			tc := h.transcript()
			ehlo := tc.cmd("EHLO client.test", "250 ")
			if !strings.Contains(ehlo, "SMTPUTF8") || !strings.Contains(ehlo, fmt.Sprintf("SIZE %d\r\n", 30<<20)) {
				t.Fatalf("first EHLO after start lacks the upstream's SMTPUTF8 and SIZE 31457280:\n%s", ehlo)
			}
			tc.cmd("AUTH PLAIN "+plainIR("", testLogin, testPassword), "235")
			tc.cmd("MAIL FROM:<bïlling@exämple.com> SMTPUTF8", "250")
			tc.cmd("RCPT TO:<bøb@exämple.net>", "250")
			tc.cmd("DATA", "354")
			tc.cmd("Subject: ünïcödé\r\n\r\nGrüße\r\n.", "250")
			if msgs := h.up.messages(); len(msgs) != 1 || msgs[0].from != "bïlling@exämple.com" {
				t.Fatalf("upstream got %+v", msgs)
			}
		})
	}
}

// TestEHLOProbeFailureKeepsDefaults: an upstream that cannot be probed
// leaves the conservative EHLO, and the session still works.
func TestEHLOProbeFailureKeepsDefaults(t *testing.T) {
	h := newHarness(t, probeAtStart{}, func(o *Options) {
		o.Upstreams = func() []*proxy.Dialer {
			return []*proxy.Dialer{{Addr: "127.0.0.1:1", Mode: proxy.TLSStartTLS, DialTimeout: time.Second}}
		}
	})
	ehlo := h.transcript().cmd("EHLO client.test", "250 ")
	if strings.Contains(ehlo, "SMTPUTF8") {
		t.Fatalf("EHLO offers SMTPUTF8 although no upstream was probed:\n%s", ehlo)
	}
	h.log.waitFor(t, "probing the upstream's SMTP extensions failed", "127.0.0.1:1")
}

func TestEHLOWithoutInsecureAuthOffersNoAuth(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.AllowInsecureAuth = false })
	tc := h.transcript()
	if ehlo := tc.cmd("EHLO client.test", "250 "); strings.Contains(ehlo, "AUTH") {
		t.Errorf("AUTH offered without TLS on a listener that does not allow it:\n%s", ehlo)
	}
	tc.cmd("AUTH PLAIN "+plainIR("", testLogin, testPassword), "523 5.7.10")
}

func TestAuthTranscripts(t *testing.T) {
	tests := []struct {
		name  string
		steps [][2]string // line to send, expected reply prefix
	}{
		{"plain with initial response", [][2]string{{"AUTH PLAIN " + plainIR("", testLogin, testPassword), "235 2.0.0"}}},
		{"plain with authz equal to login", [][2]string{{"AUTH PLAIN " + plainIR(testLogin, testLogin, testPassword), "235 2.0.0"}}},
		{"plain without initial response", [][2]string{{"AUTH PLAIN", "334 "}, {plainIR("", testLogin, testPassword), "235 2.0.0"}}},
		{"login without initial response", [][2]string{{"AUTH LOGIN", "334 VXNlcm5hbWU6"}, {b64(testLogin), "334 UGFzc3dvcmQ6"}, {b64(testPassword), "235 2.0.0"}}},
		{"login with initial response", [][2]string{{"AUTH LOGIN " + b64(testLogin), "334 UGFzc3dvcmQ6"}, {b64(testPassword), "235 2.0.0"}}},
		{"lower-case mechanism", [][2]string{{"auth login", "334 VXNlcm5hbWU6"}, {b64(testLogin), "334 UGFzc3dvcmQ6"}, {b64(testPassword), "235 2.0.0"}}},
		{"login cancelled", [][2]string{{"AUTH LOGIN", "334 VXNlcm5hbWU6"}, {"*", "501 5.0.0"}, {"MAIL FROM:<a@example.com>", "530 5.7.0 Authentication required"}}},
		{"login cancelled at password", [][2]string{{"AUTH LOGIN " + b64(testLogin), "334 UGFzc3dvcmQ6"}, {"*", "501 5.0.0"}}},
		{"wrong password", [][2]string{{"AUTH PLAIN " + plainIR("", testLogin, "nope"), "535 5.7.8 Authentication failed"}}},
		{"unknown login", [][2]string{{"AUTH LOGIN " + b64("nobody"), "334 "}, {b64(testPassword), "535 5.7.8 Authentication failed"}}},
		{"authz of another user", [][2]string{{"AUTH PLAIN " + plainIR("boss", testLogin, testPassword), "535 5.7.8"}}},
		{"plain without separators", [][2]string{{"AUTH PLAIN " + b64("garbage"), "501 5.5.2 Invalid authentication data"}}},
		{"login name with NUL", [][2]string{{"AUTH LOGIN " + b64("a\x00b"), "501 5.5.2"}}},
		{"login name too long", [][2]string{{"AUTH LOGIN " + b64(strings.Repeat("a", maxLoginField+1)), "501 5.5.2"}}},
		{"unknown mechanism", [][2]string{{"AUTH CRAM-MD5", "504 5.7.4"}}},
		{"mail before auth", [][2]string{{"MAIL FROM:<a@example.com>", "530 5.7.0"}}},
		{"second auth", [][2]string{{"AUTH PLAIN " + plainIR("", testLogin, testPassword), "235"}, {"AUTH PLAIN " + plainIR("", testLogin, testPassword), "503 5.5.1"}}},
	}
	h := newHarness(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := h.transcript()
			tc.t = t
			tc.cmd("EHLO client.test", "250 ")
			for _, s := range tt.steps {
				tc.cmd(s[0], s[1])
			}
			tc.cmd("QUIT", "221")
		})
	}
	if t.Failed() {
		t.Log(h.log.String())
	}
}

func TestLoginWithGoSMTPClient(t *testing.T) {
	tests := []struct {
		name string
		auth sasl.Client
	}{
		{"PLAIN", sasl.NewPlainClient("", testLogin, testPassword)},
		{"LOGIN", sasl.NewLoginClient(testLogin, testPassword)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			c := h.client()
			if err := c.Auth(tt.auth); err != nil {
				t.Fatalf("Auth: %v", err)
			}
			msg := testMessage("auth-"+tt.name, 3)
			if err := send(c, testMailbox, []string{"bob@example.net"}, msg); err != nil {
				t.Fatalf("send: %v", err)
			}
			if err := c.Quit(); err != nil {
				t.Fatalf("Quit: %v", err)
			}
			got := h.up.messages()
			if len(got) != 1 || string(got[0].data) != string(msg) || got[0].from != testMailbox {
				t.Fatalf("upstream got %+v", got)
			}
			h.up.set(func(f *fakeUpstream) {
				// SMTP logs in as the token's own identity, never the mailbox.
				if len(f.users) != 1 || f.users[0] != testIdentity {
					t.Errorf("upstream AUTH users = %q, want [%s]", f.users, testIdentity)
				}
			})
			h.log.waitFor(t, "msg=login", "result=success", "login="+testLogin, "identity="+testIdentity, "mech="+tt.name)
		})
	}
}

func TestLoginFailureMapping(t *testing.T) {
	rejected := &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 139},
		Message: "Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant."}
	tests := []struct {
		name      string
		setup     func(h *harness)
		want      string   // reply prefix
		logged    []string // in the audit line
		refreshes int      // token refreshes expected
	}{
		{"bad local password", func(h *harness) { h.auth.setErr(proxy.ErrBadCredentials) }, "535 5.7.8 Authentication failed",
			[]string{"result=failure", `reason="bad local credentials"`}, 0},
		{"throttled", func(h *harness) { h.auth.setErr(fmt.Errorf("login %s: %w", testLogin, proxy.ErrThrottled)) }, "454 4.7.0 Too many failed logins, try again later",
			[]string{"result=failure", "throttled"}, 0},
		{"token needs login", func(h *harness) {
			h.tokens.setErr(fmt.Errorf("%w: %w", proxy.ErrSignInNeeded,
				&tokens.NeedsLoginError{Identity: testIdentity, Code: "AADSTS700082", Meaning: "refresh token expired", Fix: "run xoauthd login " + testIdentity}))
		}, "535 5.7.0 The mail provider sign-in for this account has ended; the administrator must sign in again", []string{"result=failure", `why="Refresh token expired (AADSTS700082). Run xoauthd login alice@example.com."`}, 0},
		{"identity provider down", func(h *harness) {
			h.tokens.setErr(fmt.Errorf("%w: %w", proxy.ErrProviderUnavailable,
				&tokens.TemporaryError{Identity: testIdentity, Meaning: "token endpoint unreachable", Err: errors.New("dial tcp: connection refused")}))
		}, "454 4.7.0 Service temporarily unavailable, try again later", []string{"result=error"}, 0},
		{"upstream refuses every token", func(h *harness) { h.up.set(func(f *fakeUpstream) { f.authFail = rejected }) },
			"535 5.7.0 The mail provider refused the login for this account; contact the administrator",
			// The cause and fix of package diagnose, with the identity filled in.
			[]string{"result=failure", `why="SMTP AUTH is disabled for this tenant (535 5.7.139). An admin enables it with ` +
				"`Set-TransportConfig -SmtpClientAuthenticationDisabled $false`, or per mailbox with " +
				"`Set-CASMailbox alice@example.com -SmtpClientAuthenticationDisabled $false`; allow 15–60 minutes.\""}, 1},
		{"upstream refuses a stale token once", func(h *harness) {
			h.up.set(func(f *fakeUpstream) { f.rejectToken["tok-"+testIdentity+"-0"] = true })
		}, "235 2.0.0", []string{"result=success"}, 1},
		{"upstream temporarily failing", func(h *harness) {
			h.up.set(func(f *fakeUpstream) {
				f.authFail = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Temporary authentication failure"}
			})
		}, "454 4.7.0", []string{"result=error"}, 0},
		{"upstream down", func(h *harness) { h.up.ln.Close(); h.up.srv.Close() }, "454 4.7.0", []string{"result=error"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			tt.setup(h)
			tc := h.transcript()
			tc.cmd("EHLO client.test", "250 ")
			r := tc.cmd("AUTH PLAIN "+plainIR("", testLogin, testPassword), tt.want)
			if strings.Contains(r, "tok-") || strings.Contains(r, "dial") || strings.Contains(r, "AADSTS") {
				t.Errorf("reply leaks internals: %q", r)
			}
			h.log.waitFor(t, append([]string{"msg=login", "login=" + testLogin}, tt.logged...)...)
			if strings.Contains(h.log.String(), testPassword) || strings.Contains(h.log.String(), "tok-") {
				t.Errorf("log holds a secret:\n%s", h.log.String())
			}
			h.tokens.mu.Lock()
			if h.tokens.refreshes != tt.refreshes {
				t.Errorf("token refreshes = %d, want %d", h.tokens.refreshes, tt.refreshes)
			}
			h.tokens.mu.Unlock()
		})
	}
}

func TestUpstreamTLSModes(t *testing.T) {
	tests := []struct {
		name string
		mode upstreamMode
		want string
		log  string
	}{
		{"starttls", upstreamStartTLS, "235 2.0.0", "result=success"},
		{"implicit", upstreamImplicit, "235 2.0.0", "result=success"},
		{"no STARTTLS offered", upstreamNoTLS, "454 4.7.0", "set upstream_tls: implicit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.mode)
			tc := h.transcript()
			tc.cmd("EHLO client.test", "250 ")
			tc.cmd("AUTH PLAIN "+plainIR("", testLogin, testPassword), tt.want)
			h.log.waitFor(t, tt.log)
		})
	}
}

func TestAuthFailuresCloseTheConnection(t *testing.T) {
	h := newHarness(t)
	tc := h.transcript()
	tc.cmd("EHLO client.test", "250 ")
	for range maxAuthFailures {
		tc.cmd("AUTH PLAIN "+plainIR("", testLogin, "wrong"), "535 5.7.8")
	}
	if rest := tc.expectClosed(); !strings.HasPrefix(rest, "421 4.7.0") {
		t.Fatalf("after %d failures got %q, want 421 and close", maxAuthFailures, rest)
	}
}

func TestPreAuthTimeout(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.PreAuthTimeout = 300 * time.Millisecond })
	tc := h.transcript()
	tc.cmd("EHLO client.test", "250 ")
	// A client that keeps talking but never logs in is still cut off.
	done := make(chan string)
	go func() { done <- tc.expectClosed() }()
	for i := 0; ; i++ {
		select {
		case rest := <-done:
			if !strings.Contains(rest, "421 4.4.2") {
				t.Fatalf("pre-auth timeout reply %q, want 421 4.4.2", rest)
			}
			return
		default:
		}
		if _, err := tc.conn.Write([]byte("NOOP\r\n")); err != nil {
			<-done
			return
		}
		time.Sleep(20 * time.Millisecond)
		if i > 1000 {
			t.Fatal("connection not closed after the pre-auth timeout")
		}
	}
}

func TestIdleTimeoutAfterLogin(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.IdleTimeout = 200 * time.Millisecond })
	tc := h.loggedInTranscript()
	if rest := tc.expectClosed(); !strings.HasPrefix(rest, "421 4.4.2") {
		t.Fatalf("idle session got %q, want 421 4.4.2 and close", rest)
	}
	// The upstream session and the slot are given back.
	h.log.waitFor(t, "result=success")
	testkit.Eventually(t, 10*time.Second, "the slot is given back", func() bool { return h.front.slots.InUse("smtp", testIdentity) == 0 })
}

func TestEndlessLineIsCut(t *testing.T) {
	h := newHarness(t)
	tc := h.transcript()
	chunk := strings.Repeat("A", 1024)
	for range 2 * maxLineLength / len(chunk) {
		if _, err := tc.conn.Write([]byte(chunk)); err != nil {
			break
		}
	}
	if rest := tc.expectClosed(); !strings.Contains(rest, "500 5.4.0 Too long line") {
		t.Fatalf("endless line got %q, want 500 and close", rest)
	}
}

func TestUnknownCommandsCloseTheConnection(t *testing.T) {
	h := newHarness(t)
	tc := h.transcript()
	for range 4 {
		tc.write("BOGUS\r\n")
	}
	if rest := tc.expectClosed(); !strings.Contains(rest, "500 5.5.1 Too many errors") {
		t.Fatalf("got %q, want the connection closed after repeated errors", rest)
	}
}

func TestRefuse(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	go func() { New(Options{}).Refuse(b); b.Close() }()
	buf := make([]byte, 100)
	n, _ := a.Read(buf)
	if got := string(buf[:n]); got != "421 4.3.2 Too many connections, try again later\r\n" {
		t.Fatalf("Refuse wrote %q", got)
	}
}

func TestDrainEndsSessionsBeforeLogin(t *testing.T) {
	h := newHarness(t)
	tc := h.transcript()
	tc.cmd("EHLO client.test", "250 ")
	shut := make(chan error, 1)
	go func() { shut <- h.psrv.Shutdown(t.Context()) }()
	// The next command after the drain began ends the session with 421.
	deadline := time.Now().Add(10 * time.Second)
	for {
		tc.write("NOOP\r\n")
		r, err := tc.reply()
		if err != nil {
			t.Fatalf("connection closed without 421: %v", err)
		}
		if strings.HasPrefix(r, "421 4.3.2") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("session not ended by the drain")
		}
		time.Sleep(5 * time.Millisecond)
	}
	tc.expectClosed()
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestEndlessSASLResponseIsCut(t *testing.T) {
	h := newHarness(t)
	tc := h.transcript()
	tc.cmd("EHLO client.test", "250 ")
	tc.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6")
	chunk := strings.Repeat("QUFB", 256)
	for range 2 * maxLineLength / len(chunk) {
		if _, err := tc.conn.Write([]byte(chunk)); err != nil {
			break
		}
	}
	if rest := tc.expectClosed(); !strings.Contains(rest, "500 5.4.0 Too long line") {
		t.Fatalf("endless SASL response got %q, want 500 and close", rest)
	}
}

func TestRecipientsAreBounded(t *testing.T) {
	h := newHarness(t)
	tc := h.loggedInTranscript()
	tc.cmd("MAIL FROM:<billing@example.com>", "250")
	var b strings.Builder
	for i := range maxRecipients + 1 {
		fmt.Fprintf(&b, "RCPT TO:<r%d@example.net>\r\n", i)
	}
	go tc.conn.Write([]byte(b.String()))
	for range maxRecipients {
		tc.expect("250 ")
	}
	tc.expect("452 4.5.3")
}

// TestEchoingUpstreamRedacted: an upstream that quotes the XOAUTH2 response
// in its refusal, or a client's command in a later reply, does not put the
// token into the log: the login audit and the "upstream refused" line show
// "***" instead.
func TestEchoingUpstreamRedacted(t *testing.T) {
	const saslPrefix = "dXNlcj1" // base64 of "user="
	t.Run("auth", func(t *testing.T) {
		h := newHarness(t)
		h.up.set(func(f *fakeUpstream) { f.echoAuth = true })
		tc := h.transcript()
		tc.cmd("EHLO client.test", "250 ")
		tc.cmd("AUTH PLAIN "+plainIR("", testLogin, testPassword), "535 5.7.0") // the upstream refused: an administrator must act
		h.log.waitFor(t, "msg=login", "result=failure", "Bad response ***")
		if strings.Contains(h.log.String(), saslPrefix) {
			t.Fatalf("the log holds the XOAUTH2 response:\n%s", h.log)
		}
	})
	t.Run("mail", func(t *testing.T) {
		h := newHarness(t)
		blob := b64("user=" + testIdentity + "\x01auth=Bearer tok-secret\x01\x01")
		h.up.set(func(f *fakeUpstream) {
			f.mailErr = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Unexpected " + blob}
		})
		tc := h.transcript()
		tc.cmd("EHLO client.test", "250 ")
		tc.cmd("AUTH PLAIN "+plainIR("", testLogin, testPassword), "235")
		tc.cmd("MAIL FROM:<"+testMailbox+">", "550 5.5.2")
		h.log.waitFor(t, "upstream refused", `text="Unexpected ***"`)
		if strings.Contains(h.log.String(), saslPrefix) {
			t.Fatalf("the log holds the XOAUTH2 response:\n%s", h.log)
		}
	})
}
