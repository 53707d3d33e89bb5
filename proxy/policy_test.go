package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		outcome Outcome
		class   Class
		result  string
		message string
	}{
		{"bad credentials", ErrBadCredentials, OutcomeBadCredentials, ClassCredentials, LoginFailure, "Authentication failed"},
		{"bad credentials, wrapped", fmt.Errorf("plain authzid: %w", ErrBadCredentials), OutcomeBadCredentials, ClassCredentials, LoginFailure, "Authentication failed"},
		{"throttled", &ThrottledError{Source: "192.0.2.1/32", Limit: 10, RetryAfter: 61500 * time.Millisecond},
			OutcomeThrottled, ClassTemporary, LoginFailure, "Too many failed logins, try again in 62 s"},
		{"throttled, bare", fmt.Errorf("x: %w", ErrThrottled), OutcomeThrottled, ClassTemporary, LoginFailure, "Too many failed logins, try again later"},
		{"sign-in needed", fmt.Errorf("%w: refresh token expired", ErrSignInNeeded), OutcomeSignInNeeded, ClassAdmin, LoginFailure,
			"The mail provider sign-in for this account has ended; the administrator must sign in again"},
		{"configuration", fmt.Errorf("%w: AADSTS7000215", ErrProviderConfig), OutcomeConfiguration, ClassAdmin, LoginFailure,
			"The mail provider refused this account's configuration; contact the administrator"},
		{"identity provider down", fmt.Errorf("%w: 503", ErrProviderUnavailable), OutcomeUnavailable, ClassTemporary, LoginError,
			"Service temporarily unavailable, try again later"},
		{"upstream rejected a fresh token", fmt.Errorf("535 5.7.139: %w", ErrUpstreamRejected), OutcomeUpstreamRefused, ClassAdmin, LoginFailure,
			"The mail provider refused the login for this account; contact the administrator"},
		{"upstream denied the session", fmt.Errorf("not connected: %w", ErrUpstreamDenied), OutcomeUpstreamRefused, ClassAdmin, LoginFailure,
			"The mail provider refused the login for this account; contact the administrator"},
		{"upstream down", fmt.Errorf("dial: %w", ErrUpstreamUnavailable), OutcomeUnavailable, ClassTemporary, LoginError,
			"Service temporarily unavailable, try again later"},
		{"identity limit", &IdentityLimitError{Identity: "a@b", Limit: 3}, OutcomeIdentityLimit, ClassLimit, LoginError,
			"Too many sessions for this account, try again when one has ended"},
		{"timeout", context.DeadlineExceeded, OutcomeUnavailable, ClassTemporary, LoginError, "Service temporarily unavailable, try again later"},
		{"unknown", errors.New("something else"), OutcomeUnavailable, ClassTemporary, LoginError, "Service temporarily unavailable, try again later"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := Classify(tt.err)
			if f.Outcome != tt.outcome || f.Class != tt.class || f.Result != tt.result || f.Message != tt.message || f.Reason == "" {
				t.Errorf("Classify = %+v, want outcome %d, class %d, result %s, message %q", f, tt.outcome, tt.class, tt.result, tt.message)
			}
		})
	}
}

func TestLoginFailedAudit(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	m := newRecMetrics()
	ctx := context.Background()
	g := &Gateway{Meter: Meter{m, "imap"}, Explain: func(err error, acct Account) (string, bool) {
		if errors.Is(err, ErrSignInNeeded) {
			return "Refresh token expired. Run `xoauthd login " + acct.Identity + "`.", true
		}
		return "", false
	}}
	acct := Account{Login: "erp", Identity: "erp@contoso.com"}
	f := g.LoginFailed(ctx, log, "erp", acct, fmt.Errorf("%w: AADSTS700082", ErrSignInNeeded), slog.String("mech", "PLAIN"))
	if f.Outcome != OutcomeSignInNeeded {
		t.Errorf("outcome = %d", f.Outcome)
	}
	line := buf.String()
	for _, want := range []string{"msg=login", "result=failure", "login=erp", "identity=erp@contoso.com",
		`reason="the identity needs a new sign-in"`, "mech=PLAIN", "AADSTS700082", "why=\"Refresh token expired. Run `xoauthd login erp@contoso.com`.\""} {
		if !strings.Contains(line, want) {
			t.Errorf("audit line lacks %s: %s", want, line)
		}
	}
	if got := m.get("login imap failure"); got != 1 {
		t.Errorf("login failures counted = %d, want 1", got)
	}
	g.LoginFailed(ctx, log, "erp", acct, &IdentityLimitError{Identity: acct.Identity, Limit: 3})
	if got := m.get("limited imap"); got != 1 {
		t.Errorf("identity-limited logins counted = %d, want 1", got)
	}
	// Nothing to explain, no gateway: no why.
	buf.Reset()
	(*Gateway)(nil).LoginFailed(ctx, log, "erp", Account{}, ErrBadCredentials)
	if line := buf.String(); strings.Contains(line, "why=") || !strings.Contains(line, `reason="bad local credentials"`) {
		t.Errorf("audit line of a bad password: %s", line)
	}
}
