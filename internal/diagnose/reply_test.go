package diagnose

import (
	"errors"
	"strings"
	"testing"

	"github.com/xoauthd/xoauthd/internal/xoauth2"
)

func TestParseSMTP(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		code     int
		enhanced EnhancedCode
		text     string
		line     string
	}{
		{"exchange tenant", "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.\r\n",
			535, EnhancedCode{5, 7, 139}, "Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.",
			"535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant."},
		{"no enhanced code", "554 Transaction failed", 554, EnhancedCode{}, "Transaction failed", "554 Transaction failed"},
		{"code only", "421", 421, EnhancedCode{}, "", "421"},
		{"multi-line", "535-5.7.8 Username and Password not accepted. For more information, go to\r\n535 5.7.8  https://support.google.com/mail/?p=BadCredentials x1\r\n",
			535, EnhancedCode{5, 7, 8}, "Username and Password not accepted. For more information, go to https://support.google.com/mail/?p=BadCredentials x1",
			"535-5.7.8 Username and Password not accepted. For more information, go to / 535 5.7.8 https://support.google.com/mail/?p=BadCredentials x1"},
		{"class differs from code", "535 4.7.0 odd", 535, EnhancedCode{}, "4.7.0 odd", "535 4.7.0 odd"},
		{"detail too long", "535 5.7.1390 x", 535, EnhancedCode{}, "5.7.1390 x", "535 5.7.1390 x"},
		{"not digits", "535 5.x.1 x", 535, EnhancedCode{}, "5.x.1 x", "535 5.x.1 x"},
		{"control characters", "550 5.1.1 bad\x1b[31m user\x00", 550, EnhancedCode{5, 1, 1}, "bad [31m user", "550 5.1.1 bad [31m user"},
		{"LF only", "250 2.0.0 Ok: queued as 4F2A1\n", 250, EnhancedCode{2, 0, 0}, "Ok: queued as 4F2A1", "250 2.0.0 Ok: queued as 4F2A1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseSMTP(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if r.Protocol != SMTP || r.Code != tt.code || r.Enhanced != tt.enhanced || r.Text != tt.text || r.Line != tt.line {
				t.Errorf("got %#v\nwant code %d enhanced %v text %q line %q", r, tt.code, tt.enhanced, tt.text, tt.line)
			}
		})
	}
}

func TestParseSMTPRejects(t *testing.T) {
	for _, in := range []string{"", "OK", "5", "99 x", "600 x", "abc def", "535x5.7.3", "250-a\r\n251 b", "535 a\r\nnot a reply"} {
		if r, err := ParseSMTP(in); err == nil || !errors.Is(err, errNotReply) {
			t.Errorf("ParseSMTP(%q) = %#v, %v; want errNotReply", in, r, err)
		}
	}
}

func TestParseIMAP(t *testing.T) {
	tests := []struct {
		in                     string
		status, respCode, text string
	}{
		{"A1 NO AUTHENTICATE failed.\r\n", "NO", "", "AUTHENTICATE failed."},
		{"a2 bad User is authenticated but not connected.", "BAD", "", "User is authenticated but not connected."},
		{"* BYE Session invalidated - AccessTokenExpired", "BYE", "", "Session invalidated - AccessTokenExpired"},
		{"A1 NO [AUTHENTICATIONFAILED] Authentication failed.", "NO", "AUTHENTICATIONFAILED", "Authentication failed."},
		{"A1 NO [unavailable] Temporary authentication failure.", "NO", "UNAVAILABLE", "Temporary authentication failure."},
		{"* OK [CAPABILITY IMAP4rev1 SASL-IR] Dovecot ready.", "OK", "CAPABILITY", "Dovecot ready."},
		{"A1 OK", "OK", "", ""},
		{"A1 NO [broken text", "NO", "", "[broken text"},
	}
	for _, tt := range tests {
		r, err := ParseIMAP(tt.in)
		if err != nil {
			t.Errorf("ParseIMAP(%q): %v", tt.in, err)
			continue
		}
		if r.Protocol != IMAP || r.Status != tt.status || r.RespCode != tt.respCode || r.Text != tt.text {
			t.Errorf("ParseIMAP(%q) = %#v, want %s [%s] %q", tt.in, r, tt.status, tt.respCode, tt.text)
		}
	}
	for _, in := range []string{"", "A1", "A1 MAYBE x", "+ eyJzdGF0dXMiOiI0MDEifQ==", "* 3 EXISTS", "a(b NO x"} {
		if r, err := ParseIMAP(in); !errors.Is(err, errNotReply) {
			t.Errorf("ParseIMAP(%q) = %#v, %v; want errNotReply", in, r, err)
		}
	}
}

func TestParsePOP3(t *testing.T) {
	tests := []struct {
		in                     string
		status, respCode, text string
	}{
		{"-ERR Authentication failure: unknown user name or bad password.\r\n", "-ERR", "", "Authentication failure: unknown user name or bad password."},
		{"-ERR [AUTH] Authentication failed.", "-ERR", "AUTH", "Authentication failed."},
		{"-ERR [SYS/TEMP] try later", "-ERR", "SYS/TEMP", "try later"},
		{"+OK 2 320", "+OK", "", "2 320"},
		{"+ok", "+OK", "", ""},
	}
	for _, tt := range tests {
		r, err := ParsePOP3(tt.in)
		if err != nil {
			t.Errorf("ParsePOP3(%q): %v", tt.in, err)
			continue
		}
		if r.Protocol != POP3 || r.Status != tt.status || r.RespCode != tt.respCode || r.Text != tt.text {
			t.Errorf("ParsePOP3(%q) = %#v, want %s [%s] %q", tt.in, r, tt.status, tt.respCode, tt.text)
		}
	}
	for _, in := range []string{"", "+ ", "ERR x", "-ERRx"} {
		if r, err := ParsePOP3(in); !errors.Is(err, errNotReply) {
			t.Errorf("ParsePOP3(%q) = %#v, %v; want errNotReply", in, r, err)
		}
	}
}

// TestParseBounded feeds replies far beyond the limits.
func TestParseBounded(t *testing.T) {
	long := strings.Repeat("x", 10*maxReplyBytes)
	r, err := ParseSMTP("550 5.1.1 " + long)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Text) > maxReplyBytes+3 || len(r.Line) > maxShown+3 {
		t.Errorf("text %d bytes, line %d bytes: not bounded", len(r.Text), len(r.Line))
	}
	many := strings.Repeat("250-x\r\n", 10*maxSMTPLines) + "250 y\r\n"
	if r, err := ParseSMTP(many); err != nil || len(r.Text) > maxReplyBytes+3 {
		t.Errorf("many lines: %v, %d bytes", err, len(r.Text))
	}
	r, err = ParseIMAP("* NO " + long)
	if err != nil || len(r.Text) > maxReplyBytes+3 || len(r.Line) > maxShown+3 {
		t.Errorf("imap: %v", err)
	}
	r, err = ParsePOP3("-ERR " + long)
	if err != nil || len(r.Text) > maxReplyBytes+3 || len(r.Line) > maxShown+3 {
		t.Errorf("pop3: %v", err)
	}
}

func TestEnhancedCodeString(t *testing.T) {
	if s := (EnhancedCode{5, 7, 139}).String(); s != "5.7.139" {
		t.Errorf("String = %q", s)
	}
	if s := (EnhancedCode{}).String(); s != "" {
		t.Errorf("zero String = %q", s)
	}
}

func TestFromSMTPError(t *testing.T) {
	r := FromSMTPError(535, [3]int{-1, -1, -1}, "Authentication failed\nsecond line")
	if !r.Enhanced.IsZero() || r.Text != "Authentication failed second line" || r.Line != "535 Authentication failed second line" {
		t.Errorf("got %#v", r)
	}
	r = FromSMTPError(432, [3]int{4, 3, 2}, "Concurrent connections limit exceeded.")
	if r.Line != "432 4.3.2 Concurrent connections limit exceeded." {
		t.Errorf("line %q", r.Line)
	}
}

// TestReplyRedactsEcho: a reply that echoes xoauthd's XOAUTH2 response is
// parsed with the response replaced by "***", in Text and in Line (what
// check prints and the log shows), for every protocol.
func TestReplyRedactsEcho(t *testing.T) {
	blob := xoauth2.Encode("billing@contoso.com", "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiJ4In0.c2ln")
	parse := map[string]func(string) (*Reply, error){
		"imap": ParseIMAP, "pop3": ParsePOP3, "smtp": ParseSMTP,
	}
	lines := map[string]string{
		"imap": "a NO Unknown command AUTHENTICATE XOAUTH2 " + blob,
		"pop3": "-ERR Unknown command " + blob,
		"smtp": "500 5.5.2 Unknown command " + blob,
	}
	for proto, p := range parse {
		r, err := p(lines[proto])
		if err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		for _, s := range []string{r.Text, r.Line, r.Error()} {
			if strings.Contains(s, blob[:20]) || !strings.Contains(s, "***") {
				t.Errorf("%s: %q, want the response as ***", proto, s)
			}
		}
	}
}

func TestIsSendingLimit(t *testing.T) {
	cases := []struct {
		line string
		want bool
	}{
		{"554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message due to a permanent exception with message Cannot submit message.", true},
		{"421 4.4.2 Message submission rate for this client has exceeded the configured limit", true},
		{"421 4.4.2 Connection dropped due to timeout", false},
		{"550 5.4.5 Daily user sending limit exceeded. For more information on Gmail sending limits go to https://support.google.com/a/answer/166852", true},
		{"451 4.4.5 Too much mail from this account, try again later", true},
		{"432 4.3.2 Concurrent connections limit exceeded.", false},
		{"554 5.2.2 mailbox full; STOREDRV.Submission.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded", false},
		{"550 5.7.60 SMTP; Client does not have permissions to send as this sender", false},
	}
	for _, c := range cases {
		r, err := ParseSMTP(c.line)
		if err != nil {
			t.Fatalf("%q: %v", c.line, err)
		}
		if got := IsSendingLimit(r); got != c.want {
			t.Errorf("IsSendingLimit(%q) = %v, want %v", c.line, got, c.want)
		}
	}
	if IsSendingLimit(nil) {
		t.Error("IsSendingLimit(nil) is true")
	}
}
