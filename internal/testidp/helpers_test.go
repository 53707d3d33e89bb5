package testidp

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// Test fixtures shared by the test files.
const (
	testTenant     = "contoso.onmicrosoft.com"
	publicID       = "11111111-1111-1111-1111-111111111111"
	confID         = "22222222-2222-2222-2222-222222222222"
	confSecret     = "s3cr~et.Value"
	alice          = "alice@contoso.com"
	bob            = "bob@contoso.com"
	testRedirect   = "http://localhost:8400/callback"
	outlookIMAP    = "https://outlook.office.com/IMAP.AccessAsUser.All"
	outlookPOP     = "https://outlook.office.com/POP.AccessAsUser.All"
	outlookSMTP    = "https://outlook.office.com/SMTP.Send"
	maxTestBody    = 1 << 20
	requestTimeout = 10 * time.Second
)

// mailScopes is what xoauthd asks Microsoft for.
func mailScopes() []string {
	return []string{outlookIMAP, outlookPOP, outlookSMTP, "offline_access", "openid", "profile", "email"}
}

// fakeClock is a settable clock for expiry and slow_down tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// setup starts an IdP with the standard clients and users.
func setup(t *testing.T, opts Options) *IdP {
	t.Helper()
	p := New(t, opts)
	addFixtures(p)
	return p
}

// setupClock starts an IdP on a fake clock.
func setupClock(t *testing.T, opts Options) (*IdP, *fakeClock) {
	t.Helper()
	clk := &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	p, err := start(opts, clk.Now)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(p.Close)
	addFixtures(p)
	return p, clk
}

func addFixtures(p *IdP) {
	p.AddClient(Client{ID: publicID, Public: true})
	p.AddClient(Client{ID: confID, Secret: confSecret})
	p.AddUser(alice)
	p.AddUser(bob)
}

func endpoint(p *IdP, tenant, name string) string {
	return p.Authority() + "/" + tenant + "/oauth2/v2.0/" + name
}

// config is an x/oauth2 configuration for the IdP, sending client
// credentials in the form as Microsoft documents.
func config(p *IdP, tenant, clientID, secret string, scopes ...string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     clientID,
		ClientSecret: secret,
		Endpoint: oauth2.Endpoint{
			AuthURL:       endpoint(p, tenant, "authorize"),
			TokenURL:      endpoint(p, tenant, "token"),
			DeviceAuthURL: endpoint(p, tenant, "devicecode"),
			AuthStyle:     oauth2.AuthStyleInParams,
		},
		RedirectURL: testRedirect,
		Scopes:      scopes,
	}
}

// getCode runs the authorize step for cfg with PKCE S256 and returns the
// code, checking that state came back.
func getCode(t *testing.T, p *IdP, cfg *oauth2.Config, verifier string, opts ...oauth2.AuthCodeOption) string {
	t.Helper()
	opts = append(opts, oauth2.S256ChallengeOption(verifier))
	target, err := p.Authorize(cfg.AuthCodeURL("st-123", opts...))
	if err != nil {
		t.Fatalf("Authorize: %v", err)
	}
	q := mustQuery(t, target)
	if q.Get("state") != "st-123" {
		t.Fatalf("state = %q, want st-123 (redirect %s)", q.Get("state"), target)
	}
	if q.Get("code") == "" {
		t.Fatalf("no code in redirect %s", target)
	}
	return q.Get("code")
}

// login runs the whole PKCE flow for user and returns the token.
func login(t *testing.T, p *IdP, cfg *oauth2.Config, user string) *oauth2.Token {
	t.Helper()
	v := oauth2.GenerateVerifier()
	code := getCode(t, p, cfg, v, oauth2.SetAuthURLParam("login_hint", user))
	tok, err := cfg.Exchange(t.Context(), code, oauth2.VerifierOption(v))
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	return tok
}

func mustQuery(t *testing.T, raw string) url.Values {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("parsing %q: %v", raw, err)
	}
	return u.Query()
}

// response is a raw HTTP answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// post sends a form to an IdP endpoint; edit may change the request.
func post(t *testing.T, target string, form url.Values, edit func(*http.Request)) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if edit != nil {
		edit(req)
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) response {
	t.Helper()
	client := &http.Client{
		Timeout:       requestTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxTestBody))
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// wantError checks a Microsoft JSON error answer.
func wantError(t *testing.T, r response, status int, oauthErr string, code int) errorBody {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("status %d, body %q is not JSON: %v", r.status, r.body, err)
	}
	if r.status != status || e.Error != oauthErr || len(e.ErrorCodes) != 1 || e.ErrorCodes[0] != code {
		t.Fatalf("got status %d error %q codes %v, want %d %q [%d]; description %q", r.status, e.Error, e.ErrorCodes, status, oauthErr, code, e.ErrorDescription)
	}
	prefix := "AADSTS" + strconv.Itoa(code) + ": "
	if !strings.HasPrefix(e.ErrorDescription, prefix) {
		t.Errorf("error_description %q does not start with %q", e.ErrorDescription, prefix)
	}
	return e
}

// wantRetrieveError checks an x/oauth2 error for the OAuth error and AADSTS code.
func wantRetrieveError(t *testing.T, err error, oauthErr string, code int) *oauth2.RetrieveError {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("error %v (%T) is not a *oauth2.RetrieveError", err, err)
	}
	if re.ErrorCode != oauthErr || !strings.HasPrefix(re.ErrorDescription, "AADSTS"+strconv.Itoa(code)+":") {
		t.Fatalf("got %q %q, want %q AADSTS%d", re.ErrorCode, re.ErrorDescription, oauthErr, code)
	}
	return re
}

// verifyJWT checks the HS256 signature and returns the raw header and the claims.
func verifyJWT(t *testing.T, key []byte, tok string) (string, map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts, want 3", len(parts))
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, mac.Sum(nil)) {
		t.Fatalf("signature does not verify with the signing key (err %v)", err)
	}
	header, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		t.Fatalf("header: %v", err)
	}
	body, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	claims := map[string]any{}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil {
		t.Fatalf("claims: %v", err)
	}
	return string(header), claims
}

func claimInt(t *testing.T, claims map[string]any, name string) int64 {
	t.Helper()
	n, ok := claims[name].(json.Number)
	if !ok {
		t.Fatalf("claim %s = %v, want a number", name, claims[name])
	}
	v, err := n.Int64()
	if err != nil {
		t.Fatalf("claim %s: %v", name, err)
	}
	return v
}

func idTokenClaims(t *testing.T, p *IdP, tok *oauth2.Token) map[string]any {
	t.Helper()
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		t.Fatal("no id_token in the response")
	}
	_, claims := verifyJWT(t, p.SigningKey(), raw)
	return claims
}

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decoding %q: %v", b, err)
	}
}
