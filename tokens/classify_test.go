package tokens

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestEntraTableComplete checks that every AADSTS code of the token-endpoint
// table in the project's Microsoft notes (§6), and the endpoint and PKCE
// codes of §1/§2, has an entry with words.
func TestEntraTableComplete(t *testing.T) {
	section6 := []int{
		50076, 50079, 50074, 700082, 70008, 700084, 70043, 50173, 50089, 50132, 50133,
		70000, 65001, 90094, 90095, 65004, 650052, 650054, 650056, 650057, 70011, 28002,
		500011, 7000215, 7000222, 7000218, 700025, 700016, 700011, 50011, 54005, 501481,
		90002, 50194, 9002332, 500208, 50020, 50034, 50126, 50053, 50057, 50055, 53003,
		530035, 53000, 53001, 70016, 70019, 90120, 90055, 50196,
	}
	sections1and2 := []int{9001023, 90124, 90130, 50147, 501491}
	for _, code := range append(section6, sections1and2...) {
		e, ok := entraCodes[code]
		switch {
		case !ok:
			t.Errorf("AADSTS%d is missing from the table", code)
		case e.meaning == "":
			t.Errorf("AADSTS%d has no meaning", code)
		case e.class < classNeedsLogin || e.class > classConfiguration:
			t.Errorf("AADSTS%d has no class", code)
		}
	}
	// The refresh-token deaths named in the issue must ask for a login.
	for _, code := range []int{700082, 70008, 70043, 50173, 50076, 50079, 65001, 70000} {
		if entraCodes[code].class != classNeedsLogin {
			t.Errorf("AADSTS%d: class %v, want needs login", code, entraCodes[code].class)
		}
	}
	for _, code := range []int{90055, 50196} {
		if entraCodes[code].class != classTemporary {
			t.Errorf("AADSTS%d: class %v, want temporary", code, entraCodes[code].class)
		}
	}
}

func TestClassifyResponse(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name     string
		oe       oauthError
		sentinel error
		code     string
		contains []string
		retryAt  time.Duration // for temporary errors; 0: none
	}{
		{"revoked refresh token", oauthError{Status: 400, Error: "invalid_grant", Codes: []int{700082},
			Description: "AADSTS700082: The refresh token has expired due to inactivity.\r\nTrace ID: x"},
			ErrNeedsLogin, "AADSTS700082", []string{`refresh token expired (AADSTS700082): run "xoauthd login billing@contoso.com"`}, 0},
		{"mfa via interaction_required", oauthError{Status: 400, Error: "interaction_required", Codes: []int{50076}},
			ErrNeedsLogin, "AADSTS50076", []string{"multi-factor", "xoauthd login"}, 0},
		{"code only in description", oauthError{Status: 400, Error: "invalid_grant", Description: "AADSTS70043: The refresh token has expired"},
			ErrNeedsLogin, "AADSTS70043", []string{"Conditional Access"}, 0},
		{"error field wins over code class", oauthError{Status: 400, Error: "invalid_grant", Codes: []int{53003}},
			ErrNeedsLogin, "AADSTS53003", []string{"Conditional Access", "xoauthd login"}, 0},
		{"bad secret", oauthError{Status: 401, Error: "invalid_client", Codes: []int{7000215}},
			ErrConfiguration, "AADSTS7000215", []string{"Value, not its Secret ID", "provider m365"}, 0},
		{"invalid_request defers to the code", oauthError{Status: 400, Error: "invalid_request", Codes: []int{90002}},
			ErrConfiguration, "AADSTS90002", []string{"tenant not found"}, 0},
		{"invalid_request throttling code", oauthError{Status: 400, Error: "invalid_request", Codes: []int{90055}},
			ErrTemporary, "AADSTS90055", []string{"throttled"}, 0},
		{"server error", oauthError{Status: 500, Error: "server_error", Codes: []int{50000}, Description: "AADSTS50000: There was an error."},
			ErrTemporary, "AADSTS50000", []string{"There was an error", "unknown error code"}, 0},
		{"429 with Retry-After", oauthError{Status: 429, Error: "temporarily_unavailable", Codes: []int{90055}, RetryAfter: 7 * time.Second},
			ErrTemporary, "AADSTS90055", nil, 7 * time.Second},
		{"429 without Retry-After", oauthError{Status: 429}, ErrTemporary, "", []string{"HTTP 429"}, defaultRetryAfter},
		{"bare 502", oauthError{Status: 502}, ErrTemporary, "", []string{"HTTP 502"}, 0},
		{"unknown code prints the description", oauthError{Status: 400, Error: "invalid_request", Codes: []int{123456},
			Description: "AADSTS123456: Something new happened.\r\nTrace ID: abc"},
			ErrConfiguration, "AADSTS123456", []string{"unknown error code", "Something new happened"}, 0},
		{"google invalid_grant", oauthError{Status: 400, Error: "invalid_grant", Description: "Token has been expired or revoked."},
			ErrNeedsLogin, "invalid_grant", []string{"Token has been expired or revoked", "xoauthd login"}, 0},
		{"device declined", oauthError{Status: 400, Error: "authorization_declined"}, ErrNeedsLogin, "authorization_declined", nil, 0},
		{"unknown 400 without anything", oauthError{Status: 400}, ErrConfiguration, "", []string{"HTTP 400"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := classifyResponse(tc.oe, "billing@contoso.com", "m365", now, nil)
			expectKind(t, err, tc.sentinel, tc.code)
			for _, s := range tc.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if strings.Contains(err.Error(), "Trace ID") {
				t.Errorf("error %q repeats the trace block", err)
			}
			var te *TemporaryError
			if errors.As(err, &te) {
				if got := te.RetryAt.Sub(now); got != tc.retryAt && !(tc.retryAt == 0 && te.RetryAt.IsZero()) {
					t.Errorf("RetryAt %v after now, want %v", got, tc.retryAt)
				}
			}
			n := 0
			for _, s := range []error{ErrNeedsLogin, ErrTemporary, ErrConfiguration} {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("error matches %d classes, want exactly 1", n)
			}
		})
	}
}

func TestClassifyNonProviderErrors(t *testing.T) {
	now := time.Now()
	err := classify(fmt.Errorf("dial: %w", errors.New("connection refused")), "a@b", "p", now)
	expectKind(t, err, ErrTemporary, "")
	if !strings.Contains(err.Error(), "could not reach") {
		t.Errorf("error %q", err)
	}
	already := &NeedsLoginError{Identity: "a@b", Meaning: "x"}
	if got := classify(already, "a@b", "p", now); got != error(already) {
		t.Errorf("classified error changed: %v", got)
	}
	if classify(nil, "a", "p", now) != nil {
		t.Error("nil error classified as non-nil")
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"12", 12 * time.Second},
		{" 3 ", 3 * time.Second},
		{"-5", 0},
		{"999999", maxRetryAfter},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"soon", 0},
	}
	for _, tc := range tests {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestOAuthErrorCode(t *testing.T) {
	tests := []struct {
		oe   oauthError
		want int
	}{
		{oauthError{Codes: []int{700082, 1}}, 700082},
		{oauthError{Description: "AADSTS50076: Due to a configuration change"}, 50076},
		{oauthError{Description: "AADSTS: nothing"}, 0},
		{oauthError{Description: "Token has been expired"}, 0},
		{oauthError{Description: "AADSTS99999999999999999999"}, 0},
	}
	for _, tc := range tests {
		if got := tc.oe.code(); got != tc.want {
			t.Errorf("%+v.code() = %d, want %d", tc.oe, got, tc.want)
		}
	}
}

// FuzzParseErrorBody checks that any body parses or is refused without a
// panic, and that classification always yields exactly one class.
func FuzzParseErrorBody(f *testing.F) {
	f.Add([]byte(`{"error":"invalid_grant","error_description":"AADSTS700082: expired","error_codes":[700082]}`))
	f.Add([]byte(`{"error":"server_error"}`))
	f.Add([]byte(`{"error_codes":"nope"}`))
	f.Add([]byte(`not json`))
	f.Add([]byte(`{"error_description":"AADSTS1234567890123: x"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		oe, ok := parseErrorBody(body)
		if !ok {
			return
		}
		oe.Status = 400
		err := classifyResponse(oe, "a@b", "p", time.Now(), nil)
		n := 0
		for _, s := range []error{ErrNeedsLogin, ErrTemporary, ErrConfiguration} {
			if errors.Is(err, s) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("error %v matches %d classes", err, n)
		}
	})
}
