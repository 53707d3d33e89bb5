package testidp

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/xoauthd/xoauthd/internal/testkit"
)

func TestFailWith(t *testing.T) {
	tests := []struct {
		name       string
		failure    Failure
		status     int
		oauthErr   string
		code       int
		retryAfter string
	}{
		{"500", Failure{Status: 500}, 500, "server_error", 50000, ""},
		{"default status", Failure{}, 500, "server_error", 50000, ""},
		{"503 with Retry-After", Failure{Status: 503, RetryAfter: 2 * time.Second}, 503, "temporarily_unavailable", 90033, "2"},
		{"429 rounds Retry-After up", Failure{Status: 429, RetryAfter: 1500 * time.Millisecond}, 429, "temporarily_unavailable", 90055, "2"},
		{"400", Failure{Status: 400}, 400, "invalid_request", 50000, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := setup(t, Options{})
			rt := p.RefreshTokenFor(alice, publicID)
			p.FailWith(tc.failure)
			form := url.Values{"grant_type": {"refresh_token"}, "client_id": {publicID}, "refresh_token": {rt}}
			for range 2 {
				r := post(t, endpoint(p, testTenant, "token"), form, nil)
				wantError(t, r, tc.status, tc.oauthErr, tc.code)
				if got := r.header.Get("Retry-After"); got != tc.retryAfter {
					t.Errorf("Retry-After = %q, want %q", got, tc.retryAfter)
				}
			}
			r := post(t, endpoint(p, testTenant, "devicecode"), url.Values{"client_id": {publicID}, "scope": {"openid"}}, nil)
			wantError(t, r, tc.status, tc.oauthErr, tc.code)
			p.ClearFailure()
			wantToken(t, post(t, endpoint(p, testTenant, "token"), form, nil))
			if c := p.Counts(); c["refresh_token"] != 3 || c["devicecode"] != 1 {
				t.Errorf("counts %v, want 3 refresh_token (failed ones included) and 1 devicecode", c)
			}
		})
	}
}

func TestFailWithCount(t *testing.T) {
	p := setup(t, Options{})
	cfg := config(p, testTenant, publicID, "", mailScopes()...)
	rt := p.RefreshTokenFor(alice, publicID)
	p.FailWith(Failure{Status: 503, Count: 2})
	for i := range 2 {
		_, err := refresh(t, cfg, rt)
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.Response.StatusCode != 503 {
			t.Fatalf("request %d: err %v, want a 503", i, err)
		}
	}
	if _, err := refresh(t, cfg, rt); err != nil {
		t.Fatalf("third request after Count 2: %v", err)
	}
}

func TestMalformedJSON(t *testing.T) {
	p := setup(t, Options{})
	cfg := config(p, testTenant, publicID, "", mailScopes()...)
	p.FailWith(Failure{MalformedJSON: true})
	_, err := refresh(t, cfg, p.RefreshTokenFor(alice, publicID))
	if err == nil || errors.As(err, new(*oauth2.RetrieveError)) {
		t.Fatalf("err = %v, want a JSON decoding error", err)
	}
	p.FailWith(Failure{Status: 502, MalformedJSON: true})
	r := post(t, endpoint(p, testTenant, "token"), url.Values{"grant_type": {"refresh_token"}}, nil)
	if r.status != 502 || !strings.HasPrefix(string(r.body), "{") || strings.HasSuffix(string(r.body), "}") {
		t.Fatalf("status %d body %q, want 502 and truncated JSON", r.status, r.body)
	}
}

func TestHangUntilClientGivesUp(t *testing.T) {
	p := setup(t, Options{})
	cfg := config(p, testTenant, publicID, "", mailScopes()...)
	p.FailWith(Failure{Hang: true})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: p.RefreshTokenFor(alice, publicID)}).Token()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the client's deadline", err)
	}
}

func TestCloseReleasesHangingRequest(t *testing.T) {
	p, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.AddClient(Client{ID: publicID, Public: true})
	p.FailWith(Failure{Hang: true})
	done := make(chan error, 1)
	go func() {
		resp, err := http.PostForm(endpoint(p, testTenant, "devicecode"), url.Values{"client_id": {publicID}, "scope": {"openid"}})
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	testkit.Eventually(t, requestTimeout, "the device code request", func() bool { return p.Counts()["devicecode"] == 1 })
	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	select {
	case <-done:
	case <-time.After(requestTimeout):
		t.Fatal("hanging request still open after Close")
	}
	select {
	case <-closed:
	case <-time.After(requestTimeout):
		t.Fatal("Close did not return")
	}
	p.Close() // idempotent
}

func TestErrorDocumentShape(t *testing.T) {
	p := setup(t, Options{})
	const corr = "aaaa0000-bb11-2222-33cc-444444dddddd"
	r := post(t, endpoint(p, testTenant, "token"), url.Values{"grant_type": {"refresh_token"}, "client_id": {"nope"}},
		func(req *http.Request) { req.Header.Set("client-request-id", corr) })
	e := wantError(t, r, 400, "unauthorized_client", 700016)
	lines := strings.Split(e.ErrorDescription, "\r\n")
	if len(lines) != 4 || lines[1] != "Trace ID: "+e.TraceID || lines[2] != "Correlation ID: "+corr || lines[3] != "Timestamp: "+e.Timestamp {
		t.Fatalf("error_description lines %q do not match trace %s, correlation %s, timestamp %s", lines, e.TraceID, corr, e.Timestamp)
	}
	if _, err := time.Parse(timestampLayout, e.Timestamp); err != nil {
		t.Errorf("timestamp %q: %v", e.Timestamp, err)
	}
	if e.ErrorURI != "https://login.microsoftonline.com/error?code=700016" || !looksLikeGUID(e.TraceID) {
		t.Errorf("error_uri %q trace_id %q", e.ErrorURI, e.TraceID)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
	var raw map[string]any
	mustJSON(t, r.body, &raw)
	for _, k := range []string{"error", "error_description", "error_codes", "timestamp", "trace_id", "correlation_id", "error_uri"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("error document lacks %q", k)
		}
	}
}
