package smtpfront

import (
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/internal/diagnose"
	"github.com/xoauthd/xoauthd/proxy"
)

// TestWhy: every upstream reply the removed local table explained is
// explained by package diagnose (432 without an enhanced code included),
// with the account's addresses in the fix; an unknown reply is quoted.
func TestWhy(t *testing.T) {
	acct := diagnose.Account{Identity: "alice@example.com", Mailbox: "billing@example.com", Sender: "billing@example.com"}
	tests := []struct {
		reply *smtp.SMTPError
		rule  string // "" means unknown to diagnose
		in    string // in the explanation
	}{
		{&smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 139}, Message: "Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information."},
			"smtp-auth-disabled-tenant", "SMTP AUTH is disabled for this tenant (535 5.7.139). An admin enables it with `Set-TransportConfig -SmtpClientAuthenticationDisabled $false`"},
		{&smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 139}, Message: "Authentication unsuccessful, user is locked by your organization's security defaults policy. Contact your administrator."}, "smtp-auth-security-defaults", "security defaults"},
		{&smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 139}, Message: "Authentication unsuccessful, the request did not meet the criteria to be authenticated successfully."}, "smtp-auth-policy", "Conditional Access"},
		{&smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 139}, Message: "Authentication unsuccessful, basic authentication is disabled."}, "smtp-basic-auth", "password login"},
		{&smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 3}, Message: "Authentication unsuccessful [SN2PR00CA0018.namprd00.prod.outlook.com]"}, "smtp-token-refused", "SMTP.Send"},
		{&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 60}, Message: "SMTP; Client does not have permissions to send as this sender"}, "smtp-send-as-denied", "Add-RecipientPermission billing@example.com -AccessRights SendAs -Trustee alice@example.com"},
		{&smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 2, 252}, Message: "SendAsDenied; a not allowed to send as b"}, "smtp-send-as-denied-data", "From header"},
		{&smtp.SMTPError{Code: 432, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Concurrent connections limit exceeded"}, "smtp-concurrency", "max_upstream_per_identity"},
		{&smtp.SMTPError{Code: 432, Message: "Concurrent connections limit exceeded"}, "smtp-concurrency", "max_upstream_per_identity"},
		{&smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 2, 0}, Message: "STOREDRV.Submission.Exception:SubmissionQuotaExceededException"}, "smtp-submission-limit", "sending limits"},
		{&smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 2, 2}, Message: "mailbox full; QuotaExceeded"}, "smtp-mailbox-full", "is full"},
		{&smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 127}, Message: "Invalid XOAUTH2 auth data - Token will expire soon"}, "smtp-token-expires-soon", "too little life"},
		{&smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 57}, Message: "Client not authenticated to send mail"}, "smtp-not-authenticated", "not authenticated"},
		{&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "unknown user"}, "", `"550 5.1.1 unknown user"`},
	}
	for _, tt := range tests {
		t.Run(tt.reply.Message, func(t *testing.T) {
			e, _ := diagnose.Explain(withConcurrencyCode(tt.reply), acct)
			if e.Rule != tt.rule {
				t.Errorf("rule %q, want %q", e.Rule, tt.rule)
			}
			text, ok := why(fmt.Errorf("upstream refused: %w", tt.reply), acct)
			if !ok || !strings.Contains(text, tt.in) {
				t.Fatalf("why = %q, %v; want it to contain %q", text, ok, tt.in)
			}
		})
	}
	if text, ok := why(nil, acct); ok || text != "" {
		t.Errorf("why(nil) = %q, %v", text, ok)
	}
	if text, ok := why(fmt.Errorf("checking: %w", proxy.ErrBadCredentials), acct); ok {
		t.Errorf("a wrong local password is explained: %q", text)
	}
}

func TestExtCacheProfile(t *testing.T) {
	const local = 35 << 20
	c := newExtCache()
	if p := c.profile(local); p != (ehloProfile{size: local}) {
		t.Fatalf("fresh profile %+v, want the local size without SMTPUTF8", p)
	}
	c.learn("exchange:587", upstreamExt{size: 157286400, smtputf8: true})
	if p := c.profile(local); p != (ehloProfile{size: local, smtputf8: true}) {
		t.Fatalf("profile %+v, want local size (smaller) and SMTPUTF8", p)
	}
	c.learn("gmail:587", upstreamExt{size: 35882577, smtputf8: true})
	c.learn("exchange:587", upstreamExt{size: 20 << 20, smtputf8: true})
	if p := c.profile(local); p != (ehloProfile{size: 20 << 20, smtputf8: true}) {
		t.Fatalf("profile %+v, want the smallest size", p)
	}
	c.learn("old:587", upstreamExt{})
	if p := c.profile(local); p.smtputf8 || p.size != 20<<20 {
		t.Fatalf("profile %+v, want no SMTPUTF8 once one upstream lacks it", p)
	}
	for i := range 2 * maxKnownUpstreams {
		c.learn(strings.Repeat("x", i), upstreamExt{size: 1})
	}
	if len(c.known) > maxKnownUpstreams {
		t.Fatalf("%d upstreams remembered, bound is %d", len(c.known), maxKnownUpstreams)
	}
	for _, tt := range []struct {
		in   string
		want int64
	}{{"", 0}, {"37748736", 37748736}, {"-1", 0}, {"x", 0}} {
		if got := parseSize(tt.in); got != tt.want {
			t.Errorf("parseSize(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}
