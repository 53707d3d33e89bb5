package testidp

import (
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestDeviceFlowWithXOAuth2(t *testing.T) {
	p := setup(t, Options{DeviceInterval: time.Second})
	cfg := config(p, "organizations", publicID, "", mailScopes()...)
	da, err := cfg.DeviceAuth(t.Context())
	if err != nil {
		t.Fatalf("DeviceAuth: %v", err)
	}
	if !regexp.MustCompile(`^[A-Z0-9]{9}$`).MatchString(da.UserCode) || da.VerificationURI != verificationURI || da.Interval != 1 {
		t.Fatalf("device auth %+v, want 9-character user code, %s and interval 1", da, verificationURI)
	}
	if left := time.Until(da.Expiry); left < 14*time.Minute || left > 15*time.Minute {
		t.Errorf("expires in %v, want about 15m", left)
	}
	if err := p.ApproveDevice(strings.ToLower(da.UserCode[:4])+"-"+da.UserCode[4:], "ALICE@contoso.com"); err != nil {
		t.Fatalf("ApproveDevice: %v", err)
	}
	tok, err := cfg.DeviceAccessToken(t.Context(), da)
	if err != nil {
		t.Fatalf("DeviceAccessToken: %v", err)
	}
	if tok.RefreshToken == "" || idTokenClaims(t, p, tok)["preferred_username"] != alice {
		t.Fatalf("token %+v, want a refresh token and an id_token for %s", tok, alice)
	}
	if err := p.ApproveDevice(da.UserCode, alice); err == nil {
		t.Fatal("approving a used code succeeded")
	}
	c := p.Counts()
	if c["devicecode"] != 1 || c[grantDeviceCode] != 1 {
		t.Fatalf("counts %v, want one devicecode request and one poll", c)
	}
}

// deviceAuth asks for a device code with a raw request.
func deviceAuth(t *testing.T, p *IdP, clientID string) deviceAuthBody {
	t.Helper()
	r := post(t, endpoint(p, testTenant, "devicecode"), url.Values{"client_id": {clientID}, "scope": {strings.Join(mailScopes(), " ")}}, nil)
	if r.status != 200 {
		t.Fatalf("devicecode: status %d %s", r.status, r.body)
	}
	var da deviceAuthBody
	mustJSON(t, r.body, &da)
	return da
}

// poll polls once for deviceCode.
func poll(t *testing.T, p *IdP, clientID, deviceCode string, extra ...string) response {
	t.Helper()
	form := url.Values{"grant_type": {grantDeviceCode}, "client_id": {clientID}, "device_code": {deviceCode}}
	for i := 0; i+1 < len(extra); i += 2 {
		form.Set(extra[i], extra[i+1])
	}
	return post(t, endpoint(p, testTenant, "token"), form, nil)
}

func wantToken(t *testing.T, r response) tokenBody {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("status %d %s, want tokens", r.status, r.body)
	}
	var body tokenBody
	mustJSON(t, r.body, &body)
	if body.AccessToken == "" || body.RefreshToken == "" || body.IDToken == "" {
		t.Fatalf("token response %s lacks a token", r.body)
	}
	return body
}

func TestDevicePolling(t *testing.T) {
	p, clk := setupClock(t, Options{})
	step := func() { clk.Advance(DefaultDeviceInterval) }

	t.Run("pending, slow_down, approved, used", func(t *testing.T) {
		da := deviceAuth(t, p, publicID)
		if da.Interval != 5 || da.ExpiresIn != 900 || !strings.Contains(da.Message, da.UserCode) {
			t.Fatalf("device auth %+v, want interval 5, expires_in 900 and the code in the message", da)
		}
		wantError(t, poll(t, p, publicID, da.DeviceCode), 400, "authorization_pending", 70016)
		wantError(t, poll(t, p, publicID, da.DeviceCode), 400, "slow_down", 70016)
		step()
		wantError(t, poll(t, p, publicID, da.DeviceCode), 400, "authorization_pending", 70016)
		if err := p.ApproveDevice(da.UserCode, bob); err != nil {
			t.Fatal(err)
		}
		step()
		wantToken(t, poll(t, p, publicID, da.DeviceCode))
		wantError(t, poll(t, p, publicID, da.DeviceCode), 400, "invalid_grant", 90120)
	})
	t.Run("declined", func(t *testing.T) {
		da := deviceAuth(t, p, publicID)
		if err := p.DeclineDevice(da.UserCode); err != nil {
			t.Fatal(err)
		}
		wantError(t, poll(t, p, publicID, da.DeviceCode), 400, "authorization_declined", 70000)
		wantError(t, poll(t, p, publicID, da.DeviceCode), 400, "invalid_grant", 90120)
	})
	t.Run("expired", func(t *testing.T) {
		da := deviceAuth(t, p, publicID)
		clk.Advance(DefaultDeviceCodeLifetime)
		wantError(t, poll(t, p, publicID, da.DeviceCode), 400, "expired_token", 70019)
		if err := p.ApproveDevice(da.UserCode, alice); err == nil {
			t.Fatal("approving an expired code succeeded")
		}
	})
	t.Run("bad codes", func(t *testing.T) {
		da := deviceAuth(t, p, publicID)
		wantError(t, poll(t, p, publicID, "DAQABIQEAAADnope"), 400, "bad_verification_code", 70000)
		p.AddClient(Client{ID: "other", Public: true})
		wantError(t, poll(t, p, "other", da.DeviceCode), 400, "bad_verification_code", 70000)
		wantError(t, poll(t, p, publicID, ""), 400, "invalid_request", 900144)
	})
	t.Run("automatic approval", func(t *testing.T) {
		p.SetDeviceAutoApprove("Erin@Contoso.com", 2)
		defer p.SetDeviceAutoApprove("", 0)
		da := deviceAuth(t, p, publicID)
		for range 2 {
			wantError(t, poll(t, p, publicID, da.DeviceCode), 400, "authorization_pending", 70016)
			step()
		}
		body := wantToken(t, poll(t, p, publicID, da.DeviceCode))
		_, claims := verifyJWT(t, p.SigningKey(), body.AccessToken)
		if claims["email"] != "erin@contoso.com" {
			t.Fatalf("email claim %v, want erin@contoso.com", claims["email"])
		}
	})
	t.Run("confidential client", func(t *testing.T) {
		da := deviceAuth(t, p, confID)
		wantError(t, poll(t, p, confID, da.DeviceCode), 401, "invalid_client", 7000218)
		if err := p.ApproveDevice(da.UserCode, alice); err != nil {
			t.Fatal(err)
		}
		wantToken(t, poll(t, p, confID, da.DeviceCode, "client_secret", confSecret))
	})
}

func TestDeviceIntervalOptions(t *testing.T) {
	for _, tc := range []struct {
		interval time.Duration
		announce int64
		slowDown bool
	}{
		{-1, 1, false},
		{300 * time.Millisecond, 1, true},
		{2500 * time.Millisecond, 3, true},
	} {
		p, _ := setupClock(t, Options{DeviceInterval: tc.interval, DeviceCodeLifetime: 90 * time.Second})
		da := deviceAuth(t, p, publicID)
		if da.Interval != tc.announce || da.ExpiresIn != 90 {
			t.Errorf("interval %v: announced interval %d expires_in %d, want %d and 90", tc.interval, da.Interval, da.ExpiresIn, tc.announce)
		}
		wantError(t, poll(t, p, publicID, da.DeviceCode), 400, "authorization_pending", 70016)
		if tc.slowDown {
			wantError(t, poll(t, p, publicID, da.DeviceCode), 400, "slow_down", 70016)
		} else {
			wantError(t, poll(t, p, publicID, da.DeviceCode), 400, "authorization_pending", 70016)
		}
	}
}

func TestDeviceCodeEndpointErrors(t *testing.T) {
	p := setup(t, Options{})
	scope := strings.Join(mailScopes(), " ")
	tests := []struct {
		name     string
		tenant   string
		form     url.Values
		oauthErr string
		code     int
	}{
		{"unknown client", testTenant, url.Values{"client_id": {"nope"}, "scope": {scope}}, "unauthorized_client", 700016},
		{"missing client_id", testTenant, url.Values{"scope": {scope}}, "invalid_request", 900144},
		{"missing scope", testTenant, url.Values{"client_id": {publicID}}, "invalid_request", 900144},
		{"unknown tenant", "fabrikam.com", url.Values{"client_id": {publicID}, "scope": {scope}}, "invalid_tenant", 90002},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, post(t, endpoint(p, tc.tenant, "devicecode"), tc.form, nil), 400, tc.oauthErr, tc.code)
		})
	}
}

func TestApproveDeviceErrors(t *testing.T) {
	p := setup(t, Options{})
	da := deviceAuth(t, p, publicID)
	if err := p.ApproveDevice("ZZZZZZZZZ", alice); err == nil {
		t.Error("unknown user code approved")
	}
	if err := p.DeclineDevice("ZZZZZZZZZ"); err == nil {
		t.Error("unknown user code declined")
	}
	if err := p.ApproveDevice(da.UserCode, "mallory@contoso.com"); err == nil || !strings.Contains(err.Error(), "AADSTS50034") {
		t.Errorf("unknown user: err %v, want AADSTS50034", err)
	}
	if err := p.DeclineDevice(da.UserCode); err != nil {
		t.Fatal(err)
	}
	if err := p.ApproveDevice(da.UserCode, alice); err == nil {
		t.Error("declined code approved")
	}
}
