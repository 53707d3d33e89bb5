package diagnose

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/tokens"
)

// The completeness lists: every reply and code of the error tables in the
// project's Microsoft notes (section 6), with the texts Exchange Online
// sends. Adding a row there means adding it here.

// exchangeSMTP are the SMTP rows, each with the rule that must explain it.
var exchangeSMTP = []struct{ line, rule string }{
	{"535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. [SN4PR0601CA0005.namprd06.prod.outlook.com]", "smtp-auth-disabled-tenant"},
	{"535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information. [BN9PR03CA0123.namprd03.prod.outlook.com]", "smtp-auth-disabled-mailbox"},
	{"535 5.7.139 Authentication unsuccessful, user is locked by your organization's security defaults policy. Contact your administrator. [AM0PR10CA0071.EURPRD10.PROD.OUTLOOK.COM]", "smtp-auth-security-defaults"},
	{"535 5.7.139 Authentication unsuccessful, the request did not meet the criteria to be authenticated successfully. Contact your administrator. [LO4P123CA0480.GBRP123.PROD.OUTLOOK.COM]", "smtp-auth-policy"},
	{"535 5.7.139 Authentication unsuccessful, basic authentication is disabled. [PH0PR07CA0012.namprd07.prod.outlook.com]", "smtp-basic-auth"},
	{"535 5.7.139 Authentication unsuccessful [PH0PR07CA0012.namprd07.prod.outlook.com]", "smtp-auth-blocked"},
	{"535 5.7.3 Authentication unsuccessful [SN7PR04CA0112.namprd04.prod.outlook.com]", "smtp-token-refused"},
	{"530 5.7.57 Client not authenticated to send mail. [DM6PR11CA0024.namprd11.prod.outlook.com]", "smtp-not-authenticated"},
	{"550 5.7.60 SMTP; Client does not have permissions to send as this sender [DM6PR02MB1234.namprd02.prod.outlook.com]", "smtp-send-as-denied"},
	{"554 5.2.252 SendAsDenied; billing@contoso.com not allowed to send as shared@contoso.com; STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message due to a permanent exception with message Cannot submit message.", "smtp-send-as-denied-data"},
	{"432 4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending for more information. [Hostname=BY5PR20MB1234.namprd20.prod.outlook.com]", "smtp-concurrency"},
	{"432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded [Hostname=BY5PR20MB1234.namprd20.prod.outlook.com]", "smtp-concurrency"},
	{"554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message due to a permanent exception with message Cannot submit message.", "smtp-submission-limit"},
	{"554 5.2.2 mailbox full; STOREDRV.Submission.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded; Failed to process message due to a permanent exception with message Cannot open mailbox.", "smtp-mailbox-full"},
	{"501 5.5.127 Invalid XOAUTH2 auth data - Token will expire soon", "smtp-token-expires-soon"},
}

// exchangeIMAPPOP are the IMAP and POP3 rows.
var exchangeIMAPPOP = []struct {
	proto      Protocol
	line, rule string
}{
	{IMAP, "A1 NO AUTHENTICATE failed.", "imap-token-refused"},
	{IMAP, "A2 BAD User is authenticated but not connected.", "imap-not-connected"},
	{IMAP, "* BYE Session invalidated - AccessTokenExpired", "imap-token-expired"},
	{IMAP, "A3 NO Request is throttled. Suggested Backoff Time: 29000 milliseconds", "imap-throttled"},
	{POP3, "-ERR Authentication failure: unknown user name or bad password.", "pop3-token-refused"},
}

// entraCodes are the AADSTS numbers of the Entra ID table.
var entraCodes = []int{
	50076, 50079, 50074, 700082, 70008, 700084, 70043, 50173, 50089, 50132, 50133, 70000, 65001,
	90094, 90095, 65004, 650052, 650054, 650056, 650057, 70011, 28002, 500011, 7000215, 7000222,
	7000218, 700025, 700016, 700011, 50011, 54005, 501481, 90002, 50194, 9002332, 500208, 50020,
	50034, 50126, 50053, 50057, 50055, 53003, 530035, 53000, 53001, 70016, 70019, 90120, 90055, 50196,
	// Also named in the notes' sections on tenants and PKCE.
	9001023, 90124, 90130, 50147, 501491,
	// Certificate credentials (client assertions).
	700027, 700024, 700023, 700021, 50013, 50027,
}

var billing = Account{Identity: "billing@contoso.com"}

func TestCompleteSMTP(t *testing.T) {
	for _, row := range exchangeSMTP {
		r, err := ParseSMTP(row.line)
		if err != nil {
			t.Errorf("%s: %v", row.line, err)
			continue
		}
		e, ok := Explain(fmt.Errorf("sending: %w", r), billing)
		if !ok || e.Rule != row.rule || e.Kind == KindUnknown || e.Cause == "" || e.Fix == "" {
			t.Errorf("%s:\n got %#v (ok %v), want rule %s", row.line, e, ok, row.rule)
		}
	}
}

func TestCompleteIMAPPOP(t *testing.T) {
	for _, row := range exchangeIMAPPOP {
		parse := ParseIMAP
		if row.proto == POP3 {
			parse = ParsePOP3
		}
		r, err := parse(row.line)
		if err != nil {
			t.Errorf("%s: %v", row.line, err)
			continue
		}
		e, ok := Explain(r, billing)
		if !ok || e.Rule != row.rule || e.Kind == KindUnknown || e.Cause == "" || e.Fix == "" {
			t.Errorf("%s:\n got %#v (ok %v), want rule %s", row.line, e, ok, row.rule)
		}
	}
}

// TestCompleteEntra sends every AADSTS code from a token endpoint to a
// tokens.Manager and explains the error it returns: each must be a known
// explanation carrying its code.
func TestCompleteEntra(t *testing.T) {
	var current atomic.Int64 // the code the endpoint answers with
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"error":             "invalid_request",
			"error_description": fmt.Sprintf("AADSTS%d: Something happened.\r\nTrace ID: 0\r\nCorrelation ID: 0\r\nTimestamp: 2026-01-01 00:00:00Z", current.Load()),
			"error_codes":       []int64{current.Load()},
		})
	}))
	defer srv.Close()
	store, err := tokens.OpenStore(filepath.Join(t.TempDir(), "tokens.json"), make([]byte, tokens.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	prov := &config.Provider{Name: "m365", Type: "microsoft", Tenant: "contoso.com", ClientID: "app",
		ClientSecret: "secret", Flow: config.FlowClientCredentials, TokenURL: srv.URL + "/token"}
	for _, code := range entraCodes {
		current.Store(int64(code))
		m := tokens.NewManager(store, func(string) (*config.Provider, error) { return prov, nil },
			tokens.Options{HTTPClient: srv.Client()})
		_, err := m.Token(context.Background(), billing.Identity)
		e, ok := Explain(err, billing)
		want := fmt.Sprintf("AADSTS%d", code)
		if !ok || e.Code != want || e.Kind == KindUnknown || e.Cause == "" || e.Fix == "" ||
			strings.Contains(e.Cause, "unknown") {
			t.Errorf("%s: got %#v (ok %v) from %v", want, e, ok, err)
		}
	}
}

// TestCompleteInvalidGrant covers the generic invalid_grant row: no AADSTS
// code, a new sign-in is the fix.
func TestCompleteInvalidGrant(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"invalid_grant","error_description":"The provided grant is invalid or expired."}`))
	}))
	defer srv.Close()
	store, err := tokens.OpenStore(filepath.Join(t.TempDir(), "tokens.json"), make([]byte, tokens.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	prov := &config.Provider{Name: "g", Type: "custom", ClientID: "app", ClientSecret: "secret",
		Flow: config.FlowClientCredentials, TokenURL: srv.URL + "/token", Scopes: []string{"mail"}}
	m := tokens.NewManager(store, func(string) (*config.Provider, error) { return prov, nil }, tokens.Options{HTTPClient: srv.Client()})
	_, err = m.Token(context.Background(), billing.Identity)
	e, ok := Explain(err, billing)
	if !ok || e.Kind != KindLogin || !strings.Contains(e.Fix, "xoauthd login") {
		t.Errorf("got %#v (ok %v) from %v", e, ok, err)
	}
}
