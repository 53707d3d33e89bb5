package testidp

import (
	"crypto/sha256"
	"encoding/base64"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestAccessTokenShape(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	p, clk := setupClock(t, Options{SigningKey: key})
	cfg := config(p, "common", publicID, "", mailScopes()...)
	tok := login(t, p, cfg, "Alice@Contoso.COM")

	header, c := verifyJWT(t, key, tok.AccessToken)
	if header != `{"alg":"HS256","typ":"JWT"}` {
		t.Fatalf("header %s", header)
	}
	now := clk.Now().Unix()
	want := map[string]any{
		"aud":                "https://outlook.office.com",
		"iss":                "https://login.microsoftonline.com/" + p.TenantID() + "/v2.0",
		"tid":                p.TenantID(),
		"scp":                "IMAP.AccessAsUser.All POP.AccessAsUser.All SMTP.Send",
		"email":              alice,
		"upn":                alice,
		"preferred_username": alice,
		"appid":              publicID,
		"name":               "Alice",
		"ver":                "2.0",
	}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("claim %s = %v, want %v", k, c[k], v)
		}
	}
	if claimInt(t, c, "iat") != now || claimInt(t, c, "nbf") != now || claimInt(t, c, "exp") != now+75*60 {
		t.Errorf("iat %v nbf %v exp %v, want %d, %d, %d", c["iat"], c["nbf"], c["exp"], now, now, now+75*60)
	}
	if _, ok := c["azp"]; ok {
		t.Error("access token has an azp claim")
	}
	if !looksLikeGUID(c["oid"].(string)) || c["sub"] == "" {
		t.Errorf("oid %v sub %v", c["oid"], c["sub"])
	}
	id := idTokenClaims(t, p, tok)
	if id["oid"] != c["oid"] || id["tid"] != p.TenantID() || id["email"] != alice || id["name"] != "Alice" {
		t.Errorf("id_token claims %v do not match the access token's user", id)
	}
	if !strings.HasPrefix(tok.RefreshToken, "0.A") {
		t.Errorf("refresh token %q does not look like Microsoft's", tok.RefreshToken)
	}
}

func TestStableIdentifiers(t *testing.T) {
	a := setup(t, Options{})
	b := setup(t, Options{Tenant: "Contoso.onmicrosoft.com"})
	c := setup(t, Options{Tenant: "fabrikam.com", Issuer: "https://issuer.test"})
	if a.TenantID() != b.TenantID() || a.TenantID() == c.TenantID() {
		t.Fatalf("tenant ids %s %s %s: want the same for the same tenant only", a.TenantID(), b.TenantID(), c.TenantID())
	}
	_, ca := verifyJWT(t, a.SigningKey(), a.MintAccessToken(alice, time.Minute))
	_, cb := verifyJWT(t, b.SigningKey(), b.MintAccessToken("ALICE@contoso.com", time.Minute))
	if ca["oid"] != cb["oid"] || ca["sub"] != cb["sub"] {
		t.Errorf("oid/sub differ across restarts: %v/%v vs %v/%v", ca["oid"], ca["sub"], cb["oid"], cb["sub"])
	}
	if _, cc := verifyJWT(t, c.SigningKey(), c.MintAccessToken(alice, time.Minute)); cc["iss"] != "https://issuer.test" {
		t.Errorf("iss = %v, want the configured issuer", cc["iss"])
	}
	if slices.Equal(a.SigningKey(), b.SigningKey()) {
		t.Error("two IdPs drew the same random signing key")
	}
}

func TestMintAccessToken(t *testing.T) {
	p, clk := setupClock(t, Options{})
	for _, tc := range []struct {
		ttl  time.Duration
		want int64
	}{
		{time.Hour, 3600},
		{90 * time.Second, 90},
		{time.Millisecond, 1},
		{0, -1},
		{-time.Minute, -60},
	} {
		_, c := verifyJWT(t, p.SigningKey(), p.MintAccessToken(bob, tc.ttl))
		if got := claimInt(t, c, "exp") - clk.Now().Unix(); got != tc.want {
			t.Errorf("ttl %v: exp-now = %d, want %d", tc.ttl, got, tc.want)
		}
		if c["email"] != bob || c["aud"] != "https://outlook.office.com" {
			t.Errorf("ttl %v: claims %v", tc.ttl, c)
		}
	}
}

func TestSetAccessTokenLifetime(t *testing.T) {
	p := setup(t, Options{AccessTokenLifetime: 2 * time.Minute})
	cfg := config(p, testTenant, publicID, "", mailScopes()...)
	rt := p.RefreshTokenFor(alice, publicID)
	for _, tc := range []struct {
		set  time.Duration
		want float64
	}{
		{0, 120}, // 0: keep the option
		{5 * time.Minute, 300},
		{-time.Second, -1},
	} {
		if tc.set != 0 {
			p.SetAccessTokenLifetime(tc.set)
		}
		tok, err := refresh(t, cfg, rt)
		if err != nil {
			t.Fatal(err)
		}
		if got := tok.Extra("expires_in"); got != tc.want {
			t.Errorf("after SetAccessTokenLifetime(%v): expires_in %v, want %v", tc.set, got, tc.want)
		}
	}
}

func TestParseScopes(t *testing.T) {
	tests := []struct {
		in, aud, scp, response string
		offline, openid        bool
	}{
		{strings.Join(mailScopes(), " "), "https://outlook.office.com", "IMAP.AccessAsUser.All POP.AccessAsUser.All SMTP.Send",
			outlookIMAP + " " + outlookPOP + " " + outlookSMTP + " openid profile email", true, true},
		{"https://outlook.office365.com/.default", "https://outlook.office365.com", "IMAP.AccessAsUser.All POP.AccessAsUser.All SMTP.Send",
			"https://outlook.office365.com/IMAP.AccessAsUser.All https://outlook.office365.com/POP.AccessAsUser.All https://outlook.office365.com/SMTP.Send", false, false},
		{"openid  profile\temail", graphAudience, "openid profile email", "openid profile email", false, true},
		{"User.Read Mail.Read", graphAudience, "User.Read Mail.Read", "https://graph.microsoft.com/User.Read https://graph.microsoft.com/Mail.Read", false, false},
		{"api://1234/.default", "api://1234", "User.Read", "api://1234/User.Read", false, false},
		{"OFFLINE_ACCESS https://outlook.office.com/SMTP.Send https://graph.microsoft.com/User.Read", "https://outlook.office.com", "SMTP.Send", outlookSMTP, true, false},
		{"", graphAudience, "", "", false, false},
		{"00000003-0000-0000-c000-000000000000/User.Read /x y/", graphAudience, "User.Read", graphAudience + "/User.Read", false, false},
		{"api://app/sub/Read", "api://app/sub", "Read", "api://app/sub/Read", false, false},
	}
	for _, tc := range tests {
		s := parseScopes(tc.in)
		if s.audience() != tc.aud || s.scp() != tc.scp || s.responseScope() != tc.response || s.offline != tc.offline || s.openid != tc.openid {
			t.Errorf("parseScopes(%q) = aud %q scp %q response %q offline %v openid %v; want %q %q %q %v %v",
				tc.in, s.audience(), s.scp(), s.responseScope(), s.offline, s.openid, tc.aud, tc.scp, tc.response, tc.offline, tc.openid)
		}
	}
}

func TestLoopbackRedirect(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"http://localhost:8400/callback", "http://localhost:8400/callback"},
		{"http://localhost", "http://localhost/"},
		{"http://127.0.0.1:1/", "http://127.0.0.1:1/"},
		{"http://LOCALHOST:5/x?y=1", "http://LOCALHOST:5/x?y=1"},
		{"https://localhost/", ""},
		{"http://localhost:/", ""},
		{"http://localhost:0/", ""},
		{"http://localhost:65536/", ""},
		{"http://127.0.0.2/", ""},
		{"http://[::1]/", ""},
		{"http://localhost.evil.com/", ""},
		{"http://user@localhost/", ""},
		{"http://localhost/#frag", ""},
		{"http:localhost", ""},
		{"%zz", ""},
	}
	for _, tc := range tests {
		u, ok := loopbackRedirect(tc.in)
		got := ""
		if ok {
			got = u.String()
		}
		if got != tc.want {
			t.Errorf("loopbackRedirect(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestVerifierMatches(t *testing.T) {
	v := strings.Repeat("a", 43)
	s256 := "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	sum := base64.RawURLEncoding.EncodeToString(sha256Sum(v))
	tests := []struct {
		method, challenge, verifier string
		want                        bool
	}{
		{"S256", sum, v, true},
		{"S256", sum, v + "b", false},
		{"plain", v, v, true},
		{"plain", s256, v + "a", false},
		{"plain", "short", "short", false},
		{"plain", strings.Repeat("!", 43), strings.Repeat("!", 43), false},
	}
	for _, tc := range tests {
		if got := verifierMatches(tc.method, tc.challenge, tc.verifier); got != tc.want {
			t.Errorf("verifierMatches(%s, %q, %q) = %v, want %v", tc.method, tc.challenge, tc.verifier, got, tc.want)
		}
	}
}

func TestDisplayName(t *testing.T) {
	for in, want := range map[string]string{
		"alice@contoso.com":        "Alice",
		"alice.smith@contoso.com":  "Alice Smith",
		"billing_dept@contoso.com": "Billing Dept",
		"x":                        "X",
		"@contoso.com":             "",
	} {
		if got := displayName(in); got != want {
			t.Errorf("displayName(%q) = %q, want %q", in, got, want)
		}
	}
}

func sha256Sum(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}
