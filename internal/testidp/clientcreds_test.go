package testidp

import (
	"net/url"
	"testing"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

const appScope = "https://outlook.office365.com/.default"

func TestClientCredentials(t *testing.T) {
	for _, tc := range []struct {
		name      string
		appEmail  string
		wantEmail any
	}{
		{"no user claims", "", nil},
		{"AppTokenEmail", "Shared@Contoso.com", "shared@contoso.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := setup(t, Options{AppTokenEmail: tc.appEmail})
			cc := clientcredentials.Config{
				ClientID: confID, ClientSecret: confSecret,
				TokenURL:  endpoint(p, p.TenantID(), "token"),
				Scopes:    []string{appScope},
				AuthStyle: oauth2.AuthStyleInParams,
			}
			tok, err := cc.Token(t.Context())
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			if tok.RefreshToken != "" || tok.Extra("id_token") != nil || tok.Extra("scope") != nil {
				t.Fatalf("client credentials returned refresh token %q, id_token %v, scope %v", tok.RefreshToken, tok.Extra("id_token"), tok.Extra("scope"))
			}
			_, c := verifyJWT(t, p.SigningKey(), tok.AccessToken)
			roles, _ := c["roles"].([]any)
			if c["aud"] != "https://outlook.office365.com" || c["sub"] != confID || c["appid"] != confID || len(roles) != 3 || c["scp"] != nil {
				t.Errorf("claims %v, want aud outlook.office365.com, sub and appid = client, three roles, no scp", c)
			}
			for _, k := range []string{"email", "upn", "preferred_username"} {
				if c[k] != tc.wantEmail {
					t.Errorf("%s = %v, want %v", k, c[k], tc.wantEmail)
				}
			}
			if c["azp"] != nil || c["oid"] == nil {
				t.Errorf("azp %v oid %v, want no azp and an oid", c["azp"], c["oid"])
			}
			if got := p.Counts()["client_credentials"]; got != 1 {
				t.Errorf("client_credentials count = %d, want 1", got)
			}
		})
	}
}

func TestClientCredentialsErrors(t *testing.T) {
	p := setup(t, Options{})
	tests := []struct {
		name     string
		tenant   string
		form     url.Values
		status   int
		oauthErr string
		code     int
	}{
		{"common", "common", url.Values{"client_id": {confID}, "client_secret": {confSecret}, "scope": {appScope}}, 400, "invalid_request", 9001023},
		{"consumers", "consumers", url.Values{"client_id": {confID}, "client_secret": {confSecret}, "scope": {appScope}}, 400, "invalid_request", 9001023},
		{"organizations", "organizations", url.Values{"client_id": {confID}, "client_secret": {confSecret}, "scope": {appScope}}, 400, "invalid_request", 50059},
		{"delegated scope", testTenant, url.Values{"client_id": {confID}, "client_secret": {confSecret}, "scope": {outlookIMAP}}, 400, "invalid_scope", 1002012},
		{"two scopes", testTenant, url.Values{"client_id": {confID}, "client_secret": {confSecret}, "scope": {appScope + " offline_access"}}, 400, "invalid_scope", 1002012},
		{"missing scope", testTenant, url.Values{"client_id": {confID}, "client_secret": {confSecret}}, 400, "invalid_request", 900144},
		{"missing secret", testTenant, url.Values{"client_id": {confID}, "scope": {appScope}}, 401, "invalid_client", 7000218},
		{"wrong secret", testTenant, url.Values{"client_id": {confID}, "client_secret": {"x"}, "scope": {appScope}}, 401, "invalid_client", 7000215},
		{"public client", testTenant, url.Values{"client_id": {publicID}, "scope": {appScope}}, 401, "invalid_client", 7000218},
		{"public client with secret", testTenant, url.Values{"client_id": {publicID}, "client_secret": {"x"}, "scope": {appScope}}, 401, "invalid_client", 700025},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.form.Set("grant_type", "client_credentials")
			wantError(t, post(t, endpoint(p, tc.tenant, "token"), tc.form, nil), tc.status, tc.oauthErr, tc.code)
		})
	}
}
