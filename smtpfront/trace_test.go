package smtpfront

import (
	"strings"
	"testing"

	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/proxy"
)

func TestTraceRedactor(t *testing.T) {
	// Each step is a command (">") or a reply ("<") and what the trace shows.
	type step = testkit.TraceStep
	tests := []struct {
		name  string
		steps []step
	}{
		{"AUTH PLAIN with initial response", []step{
			{"> EHLO client", "EHLO client"}, {"< 250-front.test", "250-front.test"}, {"< 250 AUTH PLAIN LOGIN", "250 AUTH PLAIN LOGIN"},
			{"> AUTH PLAIN AGFsaWNlAHNlY3JldA==", "AUTH PLAIN ***"}, {"< 235 2.0.0 Authentication succeeded", "235 2.0.0 Authentication succeeded"},
			{"> MAIL FROM:<a@example.com>", "MAIL FROM:<a@example.com>"},
		}},
		{"AUTH LOGIN with challenges", []step{
			{"> auth login", "auth login"}, {"< 334 VXNlcm5hbWU6", "334 ***"}, {"> YWxpY2U=", "***"},
			{"< 334 UGFzc3dvcmQ6", "334 ***"}, {"> c2VjcmV0", "***"},
			{"< 535 5.7.8 Authentication credentials invalid", "535 5.7.8 Authentication credentials invalid"},
			{"> NOOP", "NOOP"},
		}},
		{"AUTH PLAIN without initial response, cancelled", []step{
			{"> AUTH PLAIN", "AUTH PLAIN"}, {"< 334 ", "334 "}, {"> *", "***"},
			{"< 501 5.0.0 Negotiation cancelled", "501 5.0.0 Negotiation cancelled"},
		}},
		{"pipelined behind AUTH", []step{
			{"> AUTH PLAIN AGFsaWNlAHNlY3JldA==", "AUTH PLAIN ***"}, {"> MAIL FROM:<a@example.com>", "***"},
			{"< 235 2.0.0 Authentication succeeded", "235 2.0.0 Authentication succeeded"},
		}},
		{"AUTH without a mechanism", []step{
			{"> AUTH", "AUTH"}, {"< 502 5.5.4 Missing parameter", "502 5.5.4 Missing parameter"}, {"> NOOP", "NOOP"},
		}},
		{"STARTTLS refused", []step{
			{"> STARTTLS", "STARTTLS"}, {"< 502 5.5.1 TLS not supported", "502 5.5.1 TLS not supported"}, {"> NOOP", "NOOP"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stopped := false
			r := &traceRedactor{stop: func() { stopped = true }}
			testkit.TraceSteps(t, r, tt.steps)
			if stopped {
				t.Error("the trace was stopped")
			}
		})
	}
	t.Run("STARTTLS accepted stops the trace", func(t *testing.T) {
		stopped := false
		r := &traceRedactor{stop: func() { stopped = true }}
		r.Command("STARTTLS")
		r.Reply("220 2.0.0 Ready to start TLS")
		if !stopped {
			t.Error("the trace goes on after STARTTLS")
		}
	})
}

// withTrace turns the protocol trace on.
func withTrace(s *proxy.Server) { s.Trace = true }

// TestTracedSession runs a login and a message with the protocol trace on:
// the trace shows the dialogue up to the login with the credentials
// hidden, and nothing after it, the message least of all.
func TestTracedSession(t *testing.T) {
	h := newHarness(t, withTrace)
	tc := h.transcript()
	tc.cmd("EHLO client.test", "250 ")
	tc.cmd("AUTH LOGIN", "334 ")
	tc.cmd(b64(testLogin), "334 ")
	tc.cmd(b64(testPassword), "235")
	tc.data("billing@example.com", "bob@example.net")
	tc.write("Subject: traced\r\n\r\nconfidential body line\r\n.\r\n")
	tc.expect("250 ")
	tc.cmd("QUIT", "221")
	out := h.log.waitFor(t, "session closed")
	for _, w := range []string{`line="EHLO client.test"`, `line="AUTH LOGIN"`, `line="334 ***"`, "line=***"} {
		if !strings.Contains(out, w) {
			t.Errorf("trace lacks %s", w)
		}
	}
	for _, s := range []string{testPassword, b64(testPassword), b64(testLogin), "confidential body line", "MAIL FROM", "tok-"} {
		if strings.Contains(out, s) {
			t.Errorf("log contains %q", s)
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", out)
	}
}

// TestTracedSTARTTLS: the trace ends at the reply to STARTTLS (go-smtp's
// TLS layer sits above it, so the rest would be ciphertext), and nothing
// after it is logged, credentials least of all.
func TestTracedSTARTTLS(t *testing.T) {
	server, client := testkit.TLSPair(t)
	h := newHarness(t, withTrace, withLocalTLS(server, false, false))
	tc := h.transcript()
	tc.startTLS(client)
	tc.login()
	tc.cmd("QUIT", "221")
	out := h.log.waitFor(t, "session closed")
	last := strings.LastIndex(out, `line="220 2.0.0 Ready to start TLS"`)
	if last < 0 {
		t.Fatalf("trace lacks the STARTTLS reply:\n%s", out)
	}
	if after := out[last:]; strings.Count(after, "msg=trace") > 1 {
		t.Errorf("traced after STARTTLS:\n%s", after)
	}
	for _, s := range []string{testPassword, plainIR("", testLogin, testPassword)} {
		if strings.Contains(out, s) {
			t.Errorf("log contains %q", s)
		}
	}
}
