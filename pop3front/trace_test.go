package pop3front

import (
	"encoding/base64"
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
		{"USER and PASS", []step{
			{"> USER alice", "USER alice"}, {"< +OK", "+OK"},
			{"> PASS secret with spaces", "PASS ***"}, {"< +OK Logged in.", "+OK Logged in."},
		}},
		{"PASS spelled oddly", []step{
			{"> pass secret", "pass ***"}, {">   PASS\tsecret", "PASS ***"}, {"> PASS ", "PASS ***"}, {"> PASS", "PASS"},
		}},
		{"AUTH listing is shown", []step{{"> AUTH", "AUTH"}, {"< +OK", "+OK"}, {"> CAPA", "CAPA"}}},
		{"AUTH PLAIN with initial response", []step{
			{"> AUTH PLAIN AGFsaWNlAHNlY3JldA==", "AUTH PLAIN ***"}, {"< -ERR [AUTH] Authentication failed.", "-ERR [AUTH] Authentication failed."},
			{"> STAT", "STAT"},
		}},
		{"AUTH LOGIN with continuations", []step{
			{"> AUTH LOGIN", "AUTH LOGIN"}, {"< + VXNlcm5hbWU6", "+ ***"}, {"> YWxpY2U=", "***"},
			{"< + UGFzc3dvcmQ6", "+ ***"}, {"> c2VjcmV0", "***"}, {"< +OK Logged in.", "+OK Logged in."},
		}},
		{"cancelled AUTH", []step{
			{"> auth plain", "auth plain"}, {"< + ", "+ "}, {"> *", "***"}, {"< -ERR Authentication cancelled.", "-ERR Authentication cancelled."},
			{"> QUIT", "QUIT"},
		}},
		{"pipelined behind AUTH", []step{
			{"> AUTH PLAIN", "AUTH PLAIN"}, {"> AGFsaWNlAHNlY3JldA==", "***"}, {"> STAT", "***"},
			{"< + ", "+ "}, {"< +OK", "+OK"}, {"> LIST", "LIST"},
		}},
		{"upstream XOAUTH2 with error challenge", []step{
			{"> AUTH XOAUTH2", "AUTH XOAUTH2"}, {"< +", "+"}, {"> dXNlcj1hQGIBYXV0aD1CZWFyZXIgdG9rAQE=", "***"},
			{"< + eyJzdGF0dXMiOiI0MDEifQ==", "+ ***"}, {"> ", "***"}, {"< -ERR [AUTH] no", "-ERR [AUTH] no"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &traceRedactor{}
			testkit.TraceSteps(t, r, tt.steps)
		})
	}
}

func withTrace() harnessOption {
	return func(_ *Options, s *proxy.Server, _ *harness) { s.Trace = true }
}

// TestTracedLogins runs logins of every form with the protocol trace on:
// the trace shows the dialogue on both sides, and neither the passwords
// nor the tokens appear in the log, raw or in base64.
func TestTracedLogins(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString
	tests := []struct {
		name   string
		setup  func(h *harness)
		dialog func(c *client)
		want   []string // in the log
	}{
		{
			name: "USER PASS and a mail command",
			dialog: func(c *client) {
				c.cmd("USER alice", "+OK")
				c.cmd("PASS "+alicePassword, "+OK Logged in.")
				c.cmd("STAT", "+OK 2 53")
			},
			want: []string{`line="USER alice"`, `line="PASS ***"`, `peer=upstream dir=out line="AUTH XOAUTH2"`,
				`peer=upstream dir=out line=***`, `line="+OK Logged in."`},
		},
		{
			name: "AUTH PLAIN initial response",
			dialog: func(c *client) {
				c.cmd("AUTH PLAIN "+b64([]byte("\x00bob\x00"+bobPassword)), "+OK Logged in.")
			},
			want: []string{`line="AUTH PLAIN ***"`},
		},
		{
			name: "AUTH LOGIN",
			dialog: func(c *client) {
				c.cmd("AUTH LOGIN", "+ "+challengeUser)
				c.cmd(b64([]byte("alice")), "+ "+challengePasswd)
				c.cmd(b64([]byte(alicePassword)), "+OK Logged in.")
			},
			want: []string{`line="AUTH LOGIN"`, `peer=client dir=in line=***`, `peer=client dir=out line="+ ***"`},
		},
		{
			name: "stale token, error challenge and retry",
			setup: func(h *harness) {
				h.tokens.set(mailbox, fakeIdentity{token: "stale-token", refreshed: aliceToken})
			},
			dialog: func(c *client) {
				c.cmd("USER alice", "+OK")
				c.cmd("PASS "+alicePassword, "+OK Logged in.")
			},
			want: []string{`peer=upstream dir=in line="+ ***"`},
		},
	}
	secrets := []string{
		b64([]byte(alicePassword)), b64([]byte("\x00bob\x00" + bobPassword)),
		xoauth2.Encode(mailbox, aliceToken), xoauth2.Encode(mailbox, "stale-token"),
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, withTrace())
			if tt.setup != nil {
				tt.setup(h)
			}
			c := h.dialGreeted(t)
			tt.dialog(c)
			c.cmd("QUIT", "+OK Bye (2 messages left)") // the upstream's
			c.expectClosed()
			h.close() // checks the raw secrets
			logs := h.logs.String()
			for _, w := range tt.want {
				if !strings.Contains(logs, w) {
					t.Errorf("log lacks %s", w)
				}
			}
			for _, s := range secrets {
				if strings.Contains(logs, s) {
					t.Errorf("log contains the base64 secret %q", s)
				}
			}
			if t.Failed() {
				t.Logf("log:\n%s", logs)
			}
		})
	}
}
