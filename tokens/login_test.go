package tokens

import (
	"errors"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/testidp"
)

// expectNothingStored fails when the store has a record for identity.
func expectNothingStored(t *testing.T, s *Store, identity string) {
	t.Helper()
	if _, ok, err := s.get(identity); ok || err != nil {
		t.Fatalf("store has a record for %s after a failed login (err %v)", identity, err)
	}
}

func TestLoginAuthCode(t *testing.T) {
	tests := []struct {
		name, client, secret string
	}{
		{"public client with PKCE", publicClient, ""},
		{"confidential client with secret and PKCE", confClient, confSecret},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			idp := newIdP(t, testidp.Options{})
			store, _ := newStore(t)
			var authURL string
			out := newSyncBuffer()
			res, err := Login(ctxT(t), store, msProvider(idp, tc.client, tc.secret, config.FlowAuthCode), strings.ToUpper(alice), LoginOptions{
				Out:         out,
				OpenBrowser: fakeBrowser(t, idp, func(u string) string { authURL = u; return u }, nil),
			})
			if err != nil {
				t.Fatalf("Login: %v\noutput:\n%s", err, out)
			}
			if !strings.EqualFold(res.User, alice) || res.Flow != config.FlowAuthCode {
				t.Errorf("result %+v", res)
			}
			u, _ := url.Parse(authURL)
			q := u.Query()
			checks := map[string]string{
				"code_challenge_method": "S256", "login_hint": strings.ToUpper(alice),
				"prompt": "select_account", "response_type": "code", "client_id": tc.client,
			}
			for k, want := range checks {
				if q.Get(k) != want {
					t.Errorf("authorize %s = %q, want %q", k, q.Get(k), want)
				}
			}
			if !regexp.MustCompile(`^http://localhost:\d+/$`).MatchString(q.Get("redirect_uri")) {
				t.Errorf("redirect_uri %q", q.Get("redirect_uri"))
			}
			if q.Get("state") == "" || len(q.Get("code_challenge")) != 43 {
				t.Errorf("state %q, code_challenge %q", q.Get("state"), q.Get("code_challenge"))
			}
			if !strings.Contains(out.String(), authURL) {
				t.Error("the sign-in URL was not printed")
			}
			rec := mustGet(t, store, alice)
			if rec.RefreshToken == "" || rec.AccessToken == "" || rec.Provider != "m365" || rec.LastError != nil {
				t.Fatalf("stored record %+v", rec)
			}
			// The stored tokens work for the Manager without a refresh.
			m := NewManager(store, providersFor(msProvider(idp, tc.client, tc.secret, config.FlowAuthCode)), Options{})
			if tok, err := m.Token(ctxT(t), alice); err != nil || tok != rec.AccessToken {
				t.Fatalf("Token after login: %v", err)
			}
		})
	}
}

// TestLoginAuthCodeFailures: every failure stores nothing.
func TestLoginAuthCodeFailures(t *testing.T) {
	tests := []struct {
		name         string
		editAuth     func(t *testing.T, u string) string
		editRedirect func(t *testing.T, u string) string
		signedIn     string
		check        func(t *testing.T, err error)
	}{
		{
			name: "PKCE verifier does not match",
			editAuth: func(t *testing.T, u string) string {
				return setQuery(t, u, "code_challenge", strings.Repeat("A", 43))
			},
			check: func(t *testing.T, err error) {
				if !strings.Contains(err.Error(), "AADSTS501481") {
					t.Errorf("error %q does not name AADSTS501481", err)
				}
			},
		},
		{
			name:         "state mismatch",
			editRedirect: func(t *testing.T, u string) string { return setQuery(t, u, "state", "forged") },
			check: func(t *testing.T, err error) {
				if !errors.Is(err, ErrStateMismatch) {
					t.Errorf("error %v, want ErrStateMismatch", err)
				}
			},
		},
		{
			name:     "signed in as someone else",
			signedIn: bob,
			check: func(t *testing.T, err error) {
				var me *IdentityMismatchError
				if !errors.As(err, &me) || !strings.EqualFold(me.SignedIn, bob) {
					t.Fatalf("error %v, want an identity mismatch naming %s", err, bob)
				}
				for _, s := range []string{bob, alice, "private", "nothing was stored"} {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not mention %q", err, s)
					}
				}
			},
		},
		{
			name: "consent declined",
			editRedirect: func(t *testing.T, u string) string {
				p, _ := url.Parse(u)
				q := url.Values{"state": {p.Query().Get("state")}, "error": {"access_denied"},
					"error_description": {"AADSTS65004: User declined to consent to access the app."}}
				p.RawQuery = q.Encode()
				return p.String()
			},
			check: func(t *testing.T, err error) { expectKind(t, err, ErrNeedsLogin, "AADSTS65004") },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			idp := newIdP(t, testidp.Options{})
			if tc.signedIn != "" {
				idp.SetSignedInUser(tc.signedIn)
			}
			store, _ := newStore(t)
			var ea, er func(string) string
			if tc.editAuth != nil {
				ea = func(u string) string { return tc.editAuth(t, u) }
			}
			if tc.editRedirect != nil {
				er = func(u string) string { return tc.editRedirect(t, u) }
			}
			_, err := Login(ctxT(t), store, msProvider(idp, publicClient, "", config.FlowAuthCode), alice,
				LoginOptions{OpenBrowser: fakeBrowser(t, idp, ea, er)})
			if err == nil {
				t.Fatal("Login succeeded")
			}
			tc.check(t, err)
			expectNothingStored(t, store, alice)
		})
	}
}

// TestLoginNoBrowser: with NoBrowser the opener is not called; the person
// uses the printed URL.
func TestLoginNoBrowser(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	store, _ := newStore(t)
	out := newSyncBuffer()
	done := make(chan error, 1)
	go func() {
		_, err := Login(ctxT(t), store, msProvider(idp, publicClient, "", config.FlowAuthCode), alice, LoginOptions{
			Out: out, NoBrowser: true,
			OpenBrowser: func(string) error { t.Error("browser opened despite NoBrowser"); return nil },
		})
		done <- err
	}()
	line := out.waitLine(t, idp.Authority(), 10*time.Second)
	if err := fakeBrowser(t, idp, nil, nil)(strings.TrimSpace(line)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mustGet(t, store, alice)
}

// TestLoginReplacesRecord: a new login replaces a dead record.
func TestLoginReplacesRecord(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	store, _ := newStore(t)
	put(t, store, record{Identity: alice, RefreshToken: "dead", LastError: &lastError{Class: classNeedsLogin.String(), Message: "x"}})
	if _, err := Login(ctxT(t), store, msProvider(idp, publicClient, "", config.FlowAuthCode), alice,
		LoginOptions{OpenBrowser: fakeBrowser(t, idp, nil, nil)}); err != nil {
		t.Fatal(err)
	}
	if rec := mustGet(t, store, alice); rec.RefreshToken == "dead" || rec.LastError != nil {
		t.Fatalf("record not replaced: %+v", rec.LastError)
	}
}

func TestLoginClientCredentialsNotNeeded(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	store, _ := newStore(t)
	_, err := Login(ctxT(t), store, msProvider(idp, confClient, confSecret, config.FlowClientCredentials), alice, LoginOptions{})
	if !errors.Is(err, ErrNoLoginNeeded) {
		t.Fatalf("error %v, want ErrNoLoginNeeded", err)
	}
}

// deviceLogin runs a device login in the background.
func deviceLogin(t *testing.T, idp *testidp.IdP, store *Store, out *syncBuffer) chan error {
	done := make(chan error, 1)
	go func() {
		_, err := Login(ctxT(t), store, msProvider(idp, publicClient, "", config.FlowAuthCode), alice,
			LoginOptions{Device: true, Out: out, pollUnit: 10 * time.Millisecond})
		done <- err
	}()
	return done
}

// userCode reads the user code from the device flow's instructions.
func userCode(t *testing.T, out *syncBuffer) string {
	line := out.waitLine(t, "enter the code", 10*time.Second)
	return line[strings.LastIndex(line, " ")+1:]
}

func TestLoginDevice(t *testing.T) {
	idp := newIdP(t, testidp.Options{DeviceInterval: -1})
	store, _ := newStore(t)
	out := newSyncBuffer()
	done := deviceLogin(t, idp, store, out)
	code := userCode(t, out)
	if err := idp.ApproveDevice(code, alice); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Login: %v\n%s", err, out)
	}
	for _, s := range []string{"https://microsoft.com/devicelogin", code, "expires at"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output does not contain %q:\n%s", s, out)
		}
	}
	if strings.Contains(out.String(), "\r") || strings.Contains(out.String(), "\033[") {
		t.Error("plain output contains terminal control characters")
	}
	if rec := mustGet(t, store, alice); rec.Flow != config.FlowDevice || rec.RefreshToken == "" {
		t.Fatalf("record flow %q", rec.Flow)
	}
}

// TestLoginDeviceSlowDown: polling faster than the IdP allows gets
// slow_down; the interval grows and the login still succeeds.
func TestLoginDeviceSlowDown(t *testing.T) {
	idp := newIdP(t, testidp.Options{DeviceInterval: 150 * time.Millisecond})
	idp.SetDeviceAutoApprove(alice, 1)
	store, _ := newStore(t)
	out := newSyncBuffer()
	if err := <-deviceLogin(t, idp, store, out); err != nil {
		t.Fatalf("Login: %v\n%s", err, out)
	}
	if !strings.Contains(out.String(), "checking every 6 s") {
		t.Errorf("no slow_down note in the output:\n%s", out)
	}
	mustGet(t, store, alice)
}

func TestLoginDeviceFailures(t *testing.T) {
	tests := []struct {
		name string
		opts testidp.Options
		act  func(t *testing.T, idp *testidp.IdP, code string)
		want string
	}{
		{"declined", testidp.Options{DeviceInterval: -1},
			func(t *testing.T, idp *testidp.IdP, code string) {
				if err := idp.DeclineDevice(code); err != nil {
					t.Fatal(err)
				}
			}, "declined"},
		{"expired", testidp.Options{DeviceInterval: -1, DeviceCodeLifetime: 200 * time.Millisecond},
			func(*testing.T, *testidp.IdP, string) {}, "expired"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			idp := newIdP(t, tc.opts)
			store, _ := newStore(t)
			out := newSyncBuffer()
			done := deviceLogin(t, idp, store, out)
			tc.act(t, idp, userCode(t, out))
			err := <-done
			expectKind(t, err, ErrNeedsLogin, "")
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "xoauthd login") {
				t.Errorf("error %q, want one saying %q and how to retry", err, tc.want)
			}
			expectNothingStored(t, store, alice)
		})
	}
}

// TestLoginDeviceNeedsPublicClient: a confidential client without its
// secret cannot redeem the device code (AADSTS7000218).
func TestLoginDeviceNeedsPublicClient(t *testing.T) {
	idp := newIdP(t, testidp.Options{DeviceInterval: -1})
	idp.SetDeviceAutoApprove(alice, 0)
	store, _ := newStore(t)
	_, err := Login(ctxT(t), store, msProvider(idp, confClient, "", config.FlowDevice), alice,
		LoginOptions{Out: newSyncBuffer(), pollUnit: 10 * time.Millisecond})
	expectKind(t, err, ErrConfiguration, "AADSTS7000218")
	expectNothingStored(t, store, alice)
}

func TestResolveProvider(t *testing.T) {
	tests := []struct {
		name      string
		p         config.Provider
		tokenURL  string
		scopeHas  string
		wantError bool
	}{
		{"microsoft defaults", config.Provider{Type: "microsoft", Tenant: "contoso.com"},
			"https://login.microsoftonline.com/contoso.com/oauth2/v2.0/token", "offline_access", false},
		{"microsoft app-only", config.Provider{Type: "microsoft", Tenant: "t", Flow: "client_credentials"},
			"https://login.microsoftonline.com/t/oauth2/v2.0/token", "https://outlook.office365.com/.default", false},
		{"google", config.Provider{Type: "google"}, "https://oauth2.googleapis.com/token", "https://mail.google.com/", false},
		{"custom", config.Provider{Type: "custom", TokenURL: "https://idp.example/token"}, "https://idp.example/token", "", false},
		{"custom without token_url", config.Provider{Type: "custom"}, "", "", true},
		{"unknown type", config.Provider{Type: "yahoo"}, "", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := resolveProvider(&tc.p)
			if tc.wantError {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.tokenURL != tc.tokenURL {
				t.Errorf("token URL %q, want %q", r.tokenURL, tc.tokenURL)
			}
			if tc.scopeHas != "" && !strings.Contains(strings.Join(r.scopes, " "), tc.scopeHas) {
				t.Errorf("scopes %v lack %q", r.scopes, tc.scopeHas)
			}
			if r.flow == config.FlowClientCredentials && strings.Contains(strings.Join(r.scopes, " "), "openid") {
				t.Errorf("app-only scopes %v contain openid", r.scopes)
			}
		})
	}
}

func TestFormatLeft(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0:00", -time.Second: "0:00", 59 * time.Second: "0:59", 15 * time.Minute: "15:00", 61 * time.Second: "1:01",
	} {
		if got := formatLeft(d); got != want {
			t.Errorf("formatLeft(%v) = %q, want %q", d, got, want)
		}
	}
}
