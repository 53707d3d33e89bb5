package testidp

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

func TestAuthCodeFlow(t *testing.T) {
	p := setup(t, Options{})
	tests := []struct {
		name     string
		tenant   string
		clientID string
		secret   string
		style    oauth2.AuthStyle
	}{
		{"public client with PKCE", testTenant, publicID, "", oauth2.AuthStyleInParams},
		{"confidential client, secret in form", testTenant, confID, confSecret, oauth2.AuthStyleInParams},
		{"confidential client, HTTP Basic", testTenant, confID, confSecret, oauth2.AuthStyleInHeader},
		{"public client, empty Basic password", testTenant, publicID, "", oauth2.AuthStyleInHeader},
		{"tenant GUID", p.TenantID(), publicID, "", oauth2.AuthStyleInParams},
		{"common", "common", publicID, "", oauth2.AuthStyleInParams},
		{"organizations", "organizations", publicID, "", oauth2.AuthStyleInParams},
		{"tenant in upper case", strings.ToUpper(testTenant), publicID, "", oauth2.AuthStyleInParams},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config(p, tc.tenant, tc.clientID, tc.secret, mailScopes()...)
			cfg.Endpoint.AuthStyle = tc.style
			tok := login(t, p, cfg, "Alice@Contoso.com")
			if tok.AccessToken == "" || tok.RefreshToken == "" || tok.TokenType != "Bearer" {
				t.Fatalf("token = %+v, want access and refresh token of type Bearer", tok)
			}
			if left := time.Until(tok.Expiry); left < 74*time.Minute || left > 76*time.Minute {
				t.Errorf("expiry in %v, want about 75m", left)
			}
			if got := tok.Extra("ext_expires_in"); got != float64(75*60) {
				t.Errorf("ext_expires_in = %v, want 4500", got)
			}
			wantScope := outlookIMAP + " " + outlookPOP + " " + outlookSMTP + " openid profile email"
			if got := tok.Extra("scope"); got != wantScope {
				t.Errorf("scope = %q, want %q", got, wantScope)
			}
			id := idTokenClaims(t, p, tok)
			if id["preferred_username"] != alice || id["aud"] != tc.clientID {
				t.Errorf("id_token preferred_username %v aud %v, want %s %s", id["preferred_username"], id["aud"], alice, tc.clientID)
			}
		})
	}
}

func TestAuthorizeOverHTTP(t *testing.T) {
	p := setup(t, Options{})
	cfg := config(p, testTenant, publicID, "", mailScopes()...)
	v := oauth2.GenerateVerifier()
	authURL := cfg.AuthCodeURL("xyz", oauth2.S256ChallengeOption(v), oauth2.SetAuthURLParam("login_hint", alice), oauth2.SetAuthURLParam("prompt", "select_account"))

	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, authURL, nil)
	r := do(t, req)
	if r.status != http.StatusFound {
		t.Fatalf("status %d, want 302; body %s", r.status, r.body)
	}
	loc := r.header.Get("Location")
	if !strings.HasPrefix(loc, testRedirect+"?") {
		t.Fatalf("Location %q does not go to %s", loc, testRedirect)
	}
	q := mustQuery(t, loc)
	if q.Get("state") != "xyz" || q.Get("code") == "" || !looksLikeGUID(q.Get("session_state")) {
		t.Fatalf("redirect query %v, want code, state=xyz and session_state", q)
	}
	if _, err := cfg.Exchange(t.Context(), q.Get("code"), oauth2.VerifierOption(v)); err != nil {
		t.Fatalf("Exchange: %v", err)
	}

	bad := strings.Replace(authURL, publicID, "33333333-3333-3333-3333-333333333333", 1)
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodGet, bad, nil)
	r = do(t, req)
	if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "AADSTS700016:") {
		t.Fatalf("unknown client: status %d body %s, want 400 page with AADSTS700016", r.status, r.body)
	}
}

// authorizeURL builds a raw authorize URL for the public client with a
// valid S256 challenge; edit changes the query.
func authorizeURL(p *IdP, tenant string, edit func(url.Values)) string {
	q := url.Values{
		"client_id":             {publicID},
		"response_type":         {"code"},
		"redirect_uri":          {testRedirect},
		"scope":                 {strings.Join(mailScopes(), " ")},
		"state":                 {"keep-me"},
		"login_hint":            {alice},
		"code_challenge":        {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())},
		"code_challenge_method": {"S256"},
	}
	if edit != nil {
		edit(q)
	}
	return endpoint(p, tenant, "authorize") + "?" + q.Encode()
}

func TestAuthorizePageErrors(t *testing.T) {
	p := setup(t, Options{})
	tests := []struct {
		name   string
		tenant string
		edit   func(url.Values)
		code   int
	}{
		{"unknown tenant", "fabrikam.onmicrosoft.com", nil, 90002},
		{"missing client_id", testTenant, func(q url.Values) { q.Del("client_id") }, 900144},
		{"unknown client", testTenant, func(q url.Values) { q.Set("client_id", "nope") }, 700016},
		{"missing redirect_uri", testTenant, func(q url.Values) { q.Del("redirect_uri") }, 900144},
		{"https redirect", testTenant, func(q url.Values) { q.Set("redirect_uri", "https://localhost:8400/") }, 50011},
		{"remote redirect", testTenant, func(q url.Values) { q.Set("redirect_uri", "http://evil.example/cb") }, 50011},
		{"IPv6 loopback redirect", testTenant, func(q url.Values) { q.Set("redirect_uri", "http://[::1]:8400/") }, 50011},
		{"redirect with fragment", testTenant, func(q url.Values) { q.Set("redirect_uri", "http://localhost:8400/#x") }, 50011},
		{"redirect with user info", testTenant, func(q url.Values) { q.Set("redirect_uri", "http://u:p@localhost:8400/") }, 50011},
		{"redirect port out of range", testTenant, func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1:70000/") }, 50011},
		{"nativeclient redirect", testTenant, func(q url.Values) {
			q.Set("redirect_uri", "https://login.microsoftonline.com/common/oauth2/nativeclient")
		}, 50011},
		{"unknown login_hint user", testTenant, func(q url.Values) { q.Set("login_hint", "carol@contoso.com") }, 50034},
		{"no user at all", testTenant, func(q url.Values) { q.Del("login_hint") }, 50058},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			target, err := p.Authorize(authorizeURL(p, tc.tenant, tc.edit))
			var ae *AuthorizeError
			if !errors.As(err, &ae) {
				t.Fatalf("Authorize = %q, %v; want *AuthorizeError", target, err)
			}
			if ae.Code != tc.code || !strings.HasPrefix(ae.Description, "AADSTS") || !strings.Contains(ae.Description, "\r\nTrace ID: ") {
				t.Fatalf("error %d %q, want AADSTS%d with trace block", ae.Code, ae.Description, tc.code)
			}
		})
	}
}

func TestAuthorizeRedirectErrors(t *testing.T) {
	p := setup(t, Options{})
	tests := []struct {
		name     string
		edit     func(url.Values)
		oauthErr string
		code     string
	}{
		{"response_type token", func(q url.Values) { q.Set("response_type", "token") }, "unsupported_response_type", "AADSTS700054:"},
		{"missing response_type", func(q url.Values) { q.Del("response_type") }, "invalid_request", "AADSTS900144:"},
		{"missing scope", func(q url.Values) { q.Del("scope") }, "invalid_request", "AADSTS900144:"},
		{"short S256 challenge", func(q url.Values) { q.Set("code_challenge", "abc") }, "invalid_request", "AADSTS501491:"},
		{"S256 challenge with bad characters", func(q url.Values) { q.Set("code_challenge", strings.Repeat("+", 43)) }, "invalid_request", "AADSTS501491:"},
		{"long plain challenge", func(q url.Values) {
			q.Set("code_challenge", strings.Repeat("a", 129))
			q.Set("code_challenge_method", "plain")
		}, "invalid_request", "AADSTS501491:"},
		{"unknown challenge method", func(q url.Values) { q.Set("code_challenge_method", "S512") }, "invalid_request", "AADSTS70011:"},
		{"method without challenge", func(q url.Values) { q.Del("code_challenge") }, "invalid_request", "AADSTS900144:"},
		{"prompt=none without session", func(q url.Values) { q.Set("prompt", "none") }, "login_required", "AADSTS50058:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			target, err := p.Authorize(authorizeURL(p, testTenant, tc.edit))
			if err != nil {
				t.Fatalf("Authorize: %v", err)
			}
			if !strings.HasPrefix(target, testRedirect+"?") {
				t.Fatalf("redirect %q does not go to %s", target, testRedirect)
			}
			q := mustQuery(t, target)
			if q.Get("error") != tc.oauthErr || !strings.HasPrefix(q.Get("error_description"), tc.code) {
				t.Fatalf("error %q %q, want %q %s", q.Get("error"), q.Get("error_description"), tc.oauthErr, tc.code)
			}
			if q.Get("state") != "keep-me" || q.Get("code") != "" {
				t.Fatalf("state %q code %q, want state passed through and no code", q.Get("state"), q.Get("code"))
			}
		})
	}
}

func TestAuthorizeURLChecks(t *testing.T) {
	p := setup(t, Options{})
	for _, raw := range []string{
		"http://login.microsoftonline.com/" + testTenant + "/oauth2/v2.0/authorize?client_id=x",
		p.Authority() + "/" + testTenant + "/oauth2/v2.0/token?client_id=x",
		"::not a url",
	} {
		if target, err := p.Authorize(raw); err == nil {
			t.Errorf("Authorize(%q) = %q, want an error", raw, target)
		}
	}
}

func TestRedirectKeepsQueryAndAddsSlash(t *testing.T) {
	p := setup(t, Options{})
	target, err := p.Authorize(authorizeURL(p, testTenant, func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1:9?x=1") }))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(target, "http://127.0.0.1:9/?") || mustQuery(t, target).Get("x") != "1" {
		t.Fatalf("redirect %q, want path / and x=1 kept", target)
	}
}

func TestSignedInUserWinsOverLoginHint(t *testing.T) {
	p := setup(t, Options{})
	cfg := config(p, testTenant, publicID, "", mailScopes()...)

	p.SetSignedInUser("Carol@Contoso.com") // not added before: SSO adds it
	tok := login(t, p, cfg, alice)
	if got := idTokenClaims(t, p, tok)["preferred_username"]; got != "carol@contoso.com" {
		t.Fatalf("signed in %v, want the SSO user carol@contoso.com", got)
	}
	p.SetSignedInUser("")
	tok = login(t, p, cfg, alice)
	if got := idTokenClaims(t, p, tok)["preferred_username"]; got != alice {
		t.Fatalf("signed in %v, want the login_hint user %s", got, alice)
	}
}

func TestPromptNoneWithSession(t *testing.T) {
	p := setup(t, Options{})
	p.SetSignedInUser(bob)
	target, err := p.Authorize(authorizeURL(p, testTenant, func(q url.Values) { q.Set("prompt", "none") }))
	if err != nil || mustQuery(t, target).Get("code") == "" {
		t.Fatalf("Authorize = %q, %v; want a code", target, err)
	}
}

func TestNonceAndOIDCScopes(t *testing.T) {
	p := setup(t, Options{})
	cfg := config(p, testTenant, publicID, "", outlookIMAP) // no openid, no offline_access
	tok := login(t, p, cfg, alice)
	if tok.RefreshToken != "" || tok.Extra("id_token") != nil {
		t.Fatalf("got refresh token %q and id_token %v without offline_access/openid", tok.RefreshToken, tok.Extra("id_token"))
	}

	cfg = config(p, testTenant, publicID, "", "openid", "email", outlookIMAP)
	v := oauth2.GenerateVerifier()
	code := getCode(t, p, cfg, v, oauth2.SetAuthURLParam("login_hint", alice), oauth2.SetAuthURLParam("nonce", "n-0S6"))
	tok, err := cfg.Exchange(t.Context(), code, oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	if got := idTokenClaims(t, p, tok)["nonce"]; got != "n-0S6" {
		t.Fatalf("nonce = %v, want n-0S6", got)
	}
}

func TestPlainPKCE(t *testing.T) {
	p := setup(t, Options{})
	cfg := config(p, testTenant, publicID, "", mailScopes()...)
	for _, method := range []string{"plain", ""} {
		v := oauth2.GenerateVerifier()
		opts := []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("login_hint", alice), oauth2.SetAuthURLParam("code_challenge", v)}
		if method != "" {
			opts = append(opts, oauth2.SetAuthURLParam("code_challenge_method", method))
		}
		target, err := p.Authorize(cfg.AuthCodeURL("s", opts...))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cfg.Exchange(t.Context(), mustQuery(t, target).Get("code"), oauth2.VerifierOption(v)); err != nil {
			t.Fatalf("method %q: Exchange: %v", method, err)
		}
	}
}

func TestCodeIsSingleUse(t *testing.T) {
	p := setup(t, Options{})
	cfg := config(p, testTenant, publicID, "", mailScopes()...)
	v := oauth2.GenerateVerifier()
	code := getCode(t, p, cfg, v, oauth2.SetAuthURLParam("login_hint", alice))

	// A failed redemption (wrong verifier) does not spend the code.
	_, err := cfg.Exchange(t.Context(), code, oauth2.VerifierOption(oauth2.GenerateVerifier()))
	wantRetrieveError(t, err, "invalid_grant", 501481)
	if _, err := cfg.Exchange(t.Context(), code, oauth2.VerifierOption(v)); err != nil {
		t.Fatalf("first redemption: %v", err)
	}
	_, err = cfg.Exchange(t.Context(), code, oauth2.VerifierOption(v))
	wantRetrieveError(t, err, "invalid_grant", 54005)
}

func TestCodeRedemptionErrors(t *testing.T) {
	p, clk := setupClock(t, Options{})
	type req struct {
		tenant string
		form   url.Values
		edit   func(*http.Request)
	}
	tests := []struct {
		name     string
		client   string
		change   func(*req)
		status   int
		oauthErr string
		code     int
	}{
		{"wrong verifier", publicID, func(r *req) { r.form.Set("code_verifier", oauth2.GenerateVerifier()) }, 400, "invalid_grant", 501481},
		{"missing verifier", publicID, func(r *req) { r.form.Del("code_verifier") }, 400, "invalid_grant", 501481},
		{"redirect mismatch", publicID, func(r *req) { r.form.Set("redirect_uri", "http://localhost:8401/callback") }, 400, "invalid_grant", 50011},
		{"expired code", publicID, func(*req) { clk.Advance(DefaultCodeLifetime) }, 400, "invalid_grant", 70008},
		{"code of another client", publicID, func(r *req) {
			r.form.Set("client_id", confID)
			r.form.Set("client_secret", confSecret)
		}, 400, "invalid_grant", 70000},
		{"unknown code", publicID, func(r *req) { r.form.Set("code", "0.Anope") }, 400, "invalid_grant", 9002313},
		{"missing code", publicID, func(r *req) { r.form.Del("code") }, 400, "invalid_request", 900144},
		{"missing redirect_uri", publicID, func(r *req) { r.form.Del("redirect_uri") }, 400, "invalid_request", 900144},
		{"wrong secret", confID, func(r *req) { r.form.Set("client_secret", "secret-id-not-value") }, 401, "invalid_client", 7000215},
		{"wrong secret in Basic", confID, func(r *req) {
			r.form.Del("client_secret")
			r.edit = func(h *http.Request) { h.SetBasicAuth(confID, "nope") }
		}, 401, "invalid_client", 7000215},
		{"missing secret", confID, func(r *req) { r.form.Del("client_secret") }, 401, "invalid_client", 7000218},
		{"public client sends a secret", publicID, func(r *req) { r.form.Set("client_secret", "x") }, 401, "invalid_client", 700025},
		{"unknown client", publicID, func(r *req) { r.form.Set("client_id", "nope") }, 400, "unauthorized_client", 700016},
		{"missing client_id", publicID, func(r *req) { r.form.Del("client_id") }, 400, "invalid_request", 900144},
		{"unknown tenant", publicID, func(r *req) { r.tenant = "fabrikam.com" }, 400, "invalid_tenant", 90002},
		{"unsupported grant", publicID, func(r *req) { r.form.Set("grant_type", "password") }, 400, "unsupported_grant_type", 70003},
		{"missing grant_type", publicID, func(r *req) { r.form.Del("grant_type") }, 400, "invalid_request", 900144},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config(p, testTenant, tc.client, "", mailScopes()...)
			v := oauth2.GenerateVerifier()
			r := &req{tenant: testTenant, form: url.Values{
				"grant_type":    {"authorization_code"},
				"client_id":     {tc.client},
				"code":          {getCode(t, p, cfg, v, oauth2.SetAuthURLParam("login_hint", alice))},
				"redirect_uri":  {testRedirect},
				"code_verifier": {v},
			}}
			if tc.client == confID {
				r.form.Set("client_secret", confSecret)
			}
			tc.change(r)
			wantError(t, post(t, endpoint(p, r.tenant, "token"), r.form, r.edit), tc.status, tc.oauthErr, tc.code)
		})
	}
}

func TestTokenEndpointRejectsGET(t *testing.T) {
	p := setup(t, Options{})
	for _, name := range []string{"token", "devicecode"} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, endpoint(p, testTenant, name), nil)
		wantError(t, do(t, req), 400, "invalid_request", 900561)
	}
}

func TestOversizedForm(t *testing.T) {
	p := setup(t, Options{})
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {strings.Repeat("x", maxFormBytes)}}
	wantError(t, post(t, endpoint(p, testTenant, "token"), form, nil), 400, "invalid_request", 9002313)
}
