package testidp

import (
	"net/url"
	"strings"
	"sync"
	"testing"

	"golang.org/x/oauth2"
)

// refresh uses rt once through x/oauth2 and returns the answer.
func refresh(t *testing.T, cfg *oauth2.Config, rt string) (*oauth2.Token, error) {
	t.Helper()
	return cfg.TokenSource(t.Context(), &oauth2.Token{RefreshToken: rt}).Token()
}

func TestRefreshRotation(t *testing.T) {
	p := setup(t, Options{})
	for _, tc := range []struct {
		name, clientID, secret string
	}{
		{"public", publicID, ""},
		{"confidential", confID, confSecret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config(p, testTenant, tc.clientID, tc.secret, mailScopes()...)
			first := login(t, p, cfg, alice).RefreshToken
			seen := map[string]bool{first: true}
			rt := first
			for i := range 3 {
				tok, err := refresh(t, cfg, rt)
				if err != nil {
					t.Fatalf("refresh %d: %v", i, err)
				}
				if tok.RefreshToken == "" || seen[tok.RefreshToken] {
					t.Fatalf("refresh %d returned refresh token %q, want a new one", i, tok.RefreshToken)
				}
				if got := idTokenClaims(t, p, tok)["preferred_username"]; got != alice {
					t.Fatalf("refreshed id_token user %v, want %s", got, alice)
				}
				seen[tok.RefreshToken] = true
				rt = tok.RefreshToken
			}
			// Microsoft does not revoke a used refresh token.
			if _, err := refresh(t, cfg, first); err != nil {
				t.Fatalf("old refresh token stopped working: %v", err)
			}
		})
	}
}

func TestRefreshErrors(t *testing.T) {
	p := setup(t, Options{})
	pub := config(p, testTenant, publicID, "", mailScopes()...)
	rt := login(t, p, pub, alice).RefreshToken
	tests := []struct {
		name     string
		form     url.Values
		status   int
		oauthErr string
		code     int
	}{
		{"unknown refresh token", url.Values{"client_id": {publicID}, "refresh_token": {"0.Agarbage"}}, 400, "invalid_grant", 9002313},
		{"missing refresh token", url.Values{"client_id": {publicID}}, 400, "invalid_request", 900144},
		{"token of another client", url.Values{"client_id": {confID}, "client_secret": {confSecret}, "refresh_token": {rt}}, 400, "invalid_grant", 70000},
		{"confidential without secret", url.Values{"client_id": {confID}, "refresh_token": {rt}}, 401, "invalid_client", 7000218},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.form.Set("grant_type", "refresh_token")
			wantError(t, post(t, endpoint(p, testTenant, "token"), tc.form, nil), tc.status, tc.oauthErr, tc.code)
		})
	}
}

func TestRevokeUser(t *testing.T) {
	p := setup(t, Options{})
	cfg := config(p, testTenant, publicID, "", mailScopes()...)
	old := login(t, p, cfg, alice).RefreshToken
	other := login(t, p, cfg, bob).RefreshToken
	p.RevokeUser(alice)

	_, err := refresh(t, cfg, old)
	re := wantRetrieveError(t, err, "invalid_grant", 700082)
	if !strings.Contains(string(re.Body), `"error_codes":[700082]`) {
		t.Errorf("body %s lacks error_codes [700082]", re.Body)
	}
	if _, err := refresh(t, cfg, other); err != nil {
		t.Fatalf("another user's token stopped working: %v", err)
	}
	// Signing in again gives a working refresh token.
	fresh := login(t, p, cfg, alice).RefreshToken
	if _, err := refresh(t, cfg, fresh); err != nil {
		t.Fatalf("refresh after new sign-in: %v", err)
	}
	if _, err := refresh(t, cfg, old); err == nil {
		t.Fatal("revoked refresh token works again")
	}
}

func TestRequireMFA(t *testing.T) {
	p := setup(t, Options{})
	cfg := config(p, testTenant, publicID, "", mailScopes()...)
	rt := login(t, p, cfg, alice).RefreshToken
	p.RequireMFA(alice)

	_, err := refresh(t, cfg, rt)
	re := wantRetrieveError(t, err, "invalid_grant", 50076)
	if !strings.Contains(string(re.Body), `"suberror":"basic_action"`) {
		t.Errorf("body %s lacks suberror basic_action", re.Body)
	}
	// An interactive sign-in satisfies the MFA demand.
	if _, err := refresh(t, cfg, login(t, p, cfg, alice).RefreshToken); err != nil {
		t.Fatalf("refresh after interactive sign-in: %v", err)
	}
}

func TestRefreshScopeParameter(t *testing.T) {
	p := setup(t, Options{})
	cfg := config(p, testTenant, publicID, "", mailScopes()...)
	rt := login(t, p, cfg, alice).RefreshToken

	for _, tc := range []struct {
		scope, aud, scp string
	}{
		{"", "https://outlook.office.com", "IMAP.AccessAsUser.All POP.AccessAsUser.All SMTP.Send"},
		{"https://outlook.office365.com/.default offline_access", "https://outlook.office365.com", "IMAP.AccessAsUser.All POP.AccessAsUser.All SMTP.Send"},
		{"https://outlook.office.com/SMTP.Send https://graph.microsoft.com/User.Read", "https://outlook.office.com", "SMTP.Send"},
		{"User.Read openid", graphAudience, "User.Read"},
	} {
		form := url.Values{"grant_type": {"refresh_token"}, "client_id": {publicID}, "refresh_token": {rt}}
		if tc.scope != "" {
			form.Set("scope", tc.scope)
		}
		r := post(t, endpoint(p, testTenant, "token"), form, nil)
		if r.status != 200 {
			t.Fatalf("scope %q: status %d %s", tc.scope, r.status, r.body)
		}
		var body tokenBody
		mustJSON(t, r.body, &body)
		_, claims := verifyJWT(t, p.SigningKey(), body.AccessToken)
		if claims["aud"] != tc.aud || claims["scp"] != tc.scp {
			t.Errorf("scope %q: aud %v scp %v, want %s %q", tc.scope, claims["aud"], claims["scp"], tc.aud, tc.scp)
		}
		if body.RefreshToken == "" {
			t.Errorf("scope %q: no rotated refresh token", tc.scope)
		}
	}
}

func TestRefreshTokenFor(t *testing.T) {
	p := setup(t, Options{})
	cfg := config(p, testTenant, publicID, "", mailScopes()...)
	tok, err := refresh(t, cfg, p.RefreshTokenFor("Dave@Contoso.com", publicID))
	if err != nil {
		t.Fatal(err)
	}
	if got := idTokenClaims(t, p, tok)["upn"]; got != "dave@contoso.com" {
		t.Fatalf("upn = %v, want dave@contoso.com", got)
	}
}

func TestConcurrentRefreshes(t *testing.T) {
	p := setup(t, Options{})
	cfg := config(p, testTenant, publicID, "", mailScopes()...)
	rt := p.RefreshTokenFor(alice, publicID)
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			if _, err := cfg.TokenSource(t.Context(), &oauth2.Token{RefreshToken: rt}).Token(); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := p.Counts()["refresh_token"]; got != n {
		t.Fatalf("refresh_token count = %d, want %d", got, n)
	}
}
