package diagnose

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/internal/xoauth2"
	"github.com/xoauthd/xoauthd/tokens"
)

// TestExplainExample is the example of the issue, word for word.
func TestExplainExample(t *testing.T) {
	r, err := ParseSMTP("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.")
	if err != nil {
		t.Fatal(err)
	}
	e, ok := Explain(r, billing)
	want := "SMTP AUTH is disabled for this tenant (535 5.7.139). An admin enables it with " +
		"`Set-TransportConfig -SmtpClientAuthenticationDisabled $false`, or per mailbox with " +
		"`Set-CASMailbox billing@contoso.com -SmtpClientAuthenticationDisabled $false`; allow 15–60 minutes."
	if !ok || e.String() != want || e.Kind != KindAdmin {
		t.Errorf("got  %q (ok %v, kind %s)\nwant %q", e.String(), ok, e.Kind, want)
	}
}

func TestExplainLibraryErrors(t *testing.T) {
	tests := []struct {
		name string
		err  error
		rule string
		code string
	}{
		{"go-smtp error", fmt.Errorf("auth: %w", &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 3}, Message: "Authentication unsuccessful"}),
			"smtp-token-refused", "535 5.7.3"},
		{"go-smtp error, mailbox variant", &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 139},
			Message: "Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. Visit https://aka.ms/smtp_auth_disabled"},
			"smtp-auth-disabled-mailbox", "535 5.7.139"},
		{"go-imap error", fmt.Errorf("select: %w", &imap.Error{Type: imap.StatusResponseTypeBad, Text: "User is authenticated but not connected."}),
			"imap-not-connected", "IMAP BAD User is authenticated but not connected"},
		{"go-imap error with code", &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthenticationFailed, Text: "Authentication failed."},
			"imap-token-refused", "IMAP NO [AUTHENTICATIONFAILED]"},
		{"imap unavailable", mustIMAP(t, "A1 NO [UNAVAILABLE] Temporary authentication failure."), "imap-unavailable", "IMAP NO [UNAVAILABLE]"},
		{"pop3 [AUTH]", mustPOP3(t, "-ERR [AUTH] Authentication failed."), "pop3-token-refused", "POP3 -ERR [AUTH]"},
		{"pop3 [SYS/TEMP]", mustPOP3(t, "-ERR [SYS/TEMP] Temporary failure."), "pop3-unavailable", "POP3 -ERR [SYS/TEMP]"},
		{"pop3 [IN-USE]", mustPOP3(t, "-ERR [IN-USE] Mailbox locked."), "pop3-in-use", "POP3 -ERR [IN-USE]"},
		{"gmail", mustSMTP(t, "535-5.7.8 Username and Password not accepted.\r\n535 5.7.8 https://support.google.com/mail/?p=BadCredentials"),
			"smtp-auth-failed", "535 5.7.8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, ok := Explain(tt.err, billing)
			if !ok || e.Rule != tt.rule || e.Code != tt.code {
				t.Errorf("got %#v (ok %v), want rule %s code %q", e, ok, tt.rule, tt.code)
			}
		})
	}
}

func mustSMTP(t *testing.T, s string) *Reply {
	t.Helper()
	r, err := ParseSMTP(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustIMAP(t *testing.T, s string) *Reply {
	t.Helper()
	r, err := ParseIMAP(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustPOP3(t *testing.T, s string) *Reply {
	t.Helper()
	r, err := ParsePOP3(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestExplainNamesMailbox checks that fixes name the account's addresses:
// the delegate for SMTP, the shared mailbox (and FullAccess) for IMAP.
func TestExplainNamesMailbox(t *testing.T) {
	shared := Account{Identity: "alice@contoso.com", Mailbox: "shared@contoso.com"}
	notConnected := mustIMAP(t, "A2 BAD User is authenticated but not connected.")
	e, _ := Explain(notConnected, shared)
	if !strings.Contains(e.Fix, "`Add-MailboxPermission -Identity shared@contoso.com -User alice@contoso.com -AccessRights FullAccess`") {
		t.Errorf("shared mailbox fix without FullAccess command: %s", e.Fix)
	}
	e, _ = Explain(notConnected, Account{Identity: "alice@contoso.com"})
	if strings.Contains(e.Fix, "-User alice@contoso.com") || !strings.Contains(e.Fix, "Set-CASMailbox alice@contoso.com -ImapEnabled $true") {
		t.Errorf("own mailbox fix: %s", e.Fix)
	}
	e, _ = Explain(mustSMTP(t, "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox."), shared)
	if !strings.Contains(e.Fix, "Set-CASMailbox alice@contoso.com -SmtpClientAuthenticationDisabled $false") {
		t.Errorf("SMTP fix must name the SMTP user (the identity): %s", e.Fix)
	}
	e, _ = Explain(mustSMTP(t, "550 5.7.60 SMTP; Client does not have permissions to send as this sender"),
		Account{Identity: "alice@contoso.com", Sender: "sales@contoso.com"})
	if !strings.Contains(e.Fix, "`Add-RecipientPermission sales@contoso.com -AccessRights SendAs -Trustee alice@contoso.com`") {
		t.Errorf("send-as fix: %s", e.Fix)
	}
	e, _ = Explain(mustSMTP(t, "535 5.7.3 Authentication unsuccessful"), Account{})
	if !strings.Contains(e.Fix, "<mailbox>") {
		t.Errorf("an empty account must leave a placeholder: %s", e.Fix)
	}
}

func TestExplainTokenErrors(t *testing.T) {
	retry := time.Date(2026, 1, 2, 15, 4, 5, 0, time.Local)
	tests := []struct {
		name       string
		err        error
		kind       Kind
		code, rule string
		cause, fix string // substrings
	}{
		{"needs login", fmt.Errorf("token: %w", &tokens.NeedsLoginError{Identity: "billing@contoso.com", Code: "AADSTS700082",
			Meaning: "refresh token expired", Fix: `run "xoauthd login billing@contoso.com"`}),
			KindLogin, "AADSTS700082", "token-needs-login", "refresh token expired", `Run "xoauthd login billing@contoso.com".`},
		{"needs login without fix", &tokens.NeedsLoginError{Meaning: "no token stored"},
			KindLogin, "", "token-needs-login", "no token stored", "`xoauthd login billing@contoso.com`"},
		{"configuration", &tokens.ConfigError{Provider: "m365", Code: "AADSTS7000215", Meaning: "invalid client secret",
			Fix: "paste the secret's Value, not its Secret ID"},
			KindConfig, "AADSTS7000215", "token-configuration", "provider m365: invalid client secret", "Paste the secret's Value, not its Secret ID."},
		{"temporary", &tokens.TemporaryError{Meaning: "could not reach the identity provider", RetryAt: retry},
			KindTemporary, "", "token-temporary", "could not reach the identity provider", "after 15:04:05"},
		{"wrong account", &tokens.IdentityMismatchError{Identity: "billing@contoso.com", SignedIn: "alice@contoso.com"},
			KindLogin, "", "token-wrong-account", "done as alice@contoso.com, not as billing@contoso.com", "pick billing@contoso.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, ok := Explain(tt.err, billing)
			if !ok || e.Kind != tt.kind || e.Code != tt.code || e.Rule != tt.rule ||
				!strings.Contains(e.Cause, tt.cause) || !strings.Contains(e.Fix, tt.fix) {
				t.Errorf("got %#v (ok %v)", e, ok)
			}
		})
	}
}

func TestExplainConnectionErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, refused := net.Dial("tcp", addr)
	if refused == nil {
		t.Skip("a closed loopback port accepted a connection")
	}
	tests := []struct {
		name string
		err  error
		rule string
		kind Kind
	}{
		{"refused", fmt.Errorf("connecting: %w", refused), "connection-refused", KindNetwork},
		{"unknown host", fmt.Errorf("dial: %w", &net.DNSError{Err: "no such host", Name: "imap.contoso.invalid", IsNotFound: true}), "unknown-host", KindNetwork},
		{"deadline", fmt.Errorf("reading greeting: %w", os.ErrDeadlineExceeded), "timeout", KindNetwork},
		{"closed", fmt.Errorf("reading greeting: %w", io.EOF), "connection-closed", KindNetwork},
		{"untrusted", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, "tls-untrusted", KindNetwork},
		{"wrong name", &tls.CertificateVerificationError{Err: x509.HostnameError{Host: "127.0.0.1", Certificate: &x509.Certificate{}}}, "tls-wrong-name", KindNetwork},
		{"expired", &tls.CertificateVerificationError{Err: x509.CertificateInvalidError{Reason: x509.Expired}}, "tls-expired", KindNetwork},
		{"other invalid", x509.CertificateInvalidError{Reason: x509.NotAuthorizedToSign}, "tls-invalid", KindNetwork},
		{"not tls", fmt.Errorf("handshake: %w", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}), "tls-not-tls", KindConfig},
		{"xoauth2 challenge", &xoauth2.Error{Challenge: xoauth2.Challenge{Status: "401"}}, "xoauth2-refused", KindLogin},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, ok := Explain(tt.err, billing)
			if !ok || e.Rule != tt.rule || e.Kind != tt.kind || e.Cause == "" || e.Fix == "" || e.Raw == "" {
				t.Errorf("got %#v (ok %v)", e, ok)
			}
		})
	}
}

func TestExplainUnknown(t *testing.T) {
	if e, ok := Explain(nil, billing); ok || e != (Explanation{}) {
		t.Errorf("nil: %#v, %v", e, ok)
	}
	e, ok := Explain(errors.New("something odd\x1b[2J happened"), billing)
	if ok || e.Kind != KindUnknown || !strings.Contains(e.Cause, "something odd [2J happened") || e.Fix == "" {
		t.Errorf("unknown error: %#v, %v", e, ok)
	}
	e, ok = Explain(mustSMTP(t, "550 5.1.1 User unknown"), billing)
	want := `The SMTP server sent a reply xoauthd does not know: "550 5.1.1 User unknown". Look the reply up in the provider's documentation.`
	if ok || e.Kind != KindUnknown || e.Code != "550 5.1.1" || e.String() != want {
		t.Errorf("unknown reply: %q (%#v, %v)", e.String(), e, ok)
	}
	// A known code with an unexpected protocol or status stays unknown.
	if e, ok := Explain(mustIMAP(t, "A1 OK AUTHENTICATE failed"), billing); ok {
		t.Errorf("OK status explained as %#v", e)
	}
}

func TestExplanationLogValue(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	e, _ := Explain(mustSMTP(t, "432 4.3.2 Concurrent connections limit exceeded."), billing)
	log.Info("login failed", "why", e)
	out := buf.String()
	for _, want := range []string{`why.code="432 4.3.2"`, "why.kind=temporary", `why.cause="more than 3`, "why.fix="} {
		if !strings.Contains(out, want) {
			t.Errorf("log line %q lacks %q", out, want)
		}
	}
}

func TestSentenceAndCapitalize(t *testing.T) {
	tests := []struct{ in, sentence string }{
		{"run it", "Run it."},
		{"billing@contoso.com needs a licence", "billing@contoso.com needs a licence."},
		{"xoauthd retries.", "xoauthd retries."},
		{"`xoauthd login x`", "`xoauthd login x`."},
		{"", ""},
	}
	for _, tt := range tests {
		if got := sentence(tt.in); got != tt.sentence {
			t.Errorf("sentence(%q) = %q, want %q", tt.in, got, tt.sentence)
		}
	}
}
