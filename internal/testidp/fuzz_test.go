package testidp

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func FuzzLoopbackRedirect(f *testing.F) {
	for _, s := range []string{"http://localhost:8400/callback", "http://127.0.0.1", "https://x", "http://[::1]:1/", "http://localhost:99999", "http://a@localhost/#f", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, ok := loopbackRedirect(raw)
		if !ok {
			return
		}
		host := strings.ToLower(u.Hostname())
		if u.Scheme != "http" || (host != "localhost" && host != "127.0.0.1") || u.Path == "" || u.User != nil || u.Fragment != "" {
			t.Fatalf("accepted %q as %q", raw, u)
		}
		again, ok := loopbackRedirect(u.String())
		if !ok || again.String() != u.String() {
			t.Fatalf("normalised %q is not stable: %q, %v", u, again, ok)
		}
	})
}

func FuzzParseScopes(f *testing.F) {
	for _, s := range []string{strings.Join(mailScopes(), " "), "https://outlook.office365.com/.default", "a/b c://d/ /.default", "openid", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s := parseScopes(in)
		if s.audience() == "" {
			t.Fatalf("parseScopes(%q): empty audience", in)
		}
		if len(s.names) > 0 && parseScopes(s.responseScope()).scp() != s.scp() {
			t.Fatalf("parseScopes(%q): response scope %q does not parse back to scp %q", in, s.responseScope(), s.scp())
		}
	})
}

// fuzzIdP is an IdP with the fixtures for handler fuzzing; requests go to
// its handler directly.
func fuzzIdP(f *testing.F) (*IdP, http.Handler) {
	p, err := Start(Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(p.Close)
	addFixtures(p)
	return p, p.routes()
}

func FuzzTokenEndpoint(f *testing.F) {
	p, h := fuzzIdP(f)
	rt := p.RefreshTokenFor(alice, publicID)
	for _, s := range []string{
		"grant_type=refresh_token&client_id=" + publicID + "&refresh_token=" + rt,
		"grant_type=refresh_token&client_id=" + publicID + "&refresh_token=" + rt + "&scope=User.Read",
		"grant_type=client_credentials&client_id=" + confID + "&client_secret=" + confSecret + "&scope=https://outlook.office365.com/.default",
		"grant_type=authorization_code&client_id=" + publicID + "&code=x&redirect_uri=http://localhost/",
		"grant_type=urn:ietf:params:oauth:grant-type:device_code&client_id=" + publicID + "&device_code=x",
		"grant_type=%zz", "", "client_id=" + confID + "&grant_type=refresh_token",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest(http.MethodPost, "/"+testTenant+"/oauth2/v2.0/token", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var doc map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
			t.Fatalf("status %d body %q is not JSON", rec.Code, rec.Body.Bytes())
		}
		switch rec.Code {
		case 200:
			if doc["access_token"] == nil || doc["token_type"] != "Bearer" {
				t.Fatalf("200 without a token: %s", rec.Body.Bytes())
			}
		case 400, 401:
			codes, _ := doc["error_codes"].([]any)
			if doc["error"] == nil || len(codes) != 1 {
				t.Fatalf("error without error/error_codes: %s", rec.Body.Bytes())
			}
		default:
			t.Fatalf("unexpected status %d: %s", rec.Code, rec.Body.Bytes())
		}
	})
}

// FuzzAuthorizeEndpoint feeds raw query strings to the authorize endpoint.
func FuzzAuthorizeEndpoint(f *testing.F) {
	_, h := fuzzIdP(f)
	f.Add(strings.TrimPrefix(authorizeURL(&IdP{}, testTenant, nil), "/"+testTenant+"/oauth2/v2.0/authorize?"))
	f.Add("client_id=" + publicID + "&redirect_uri=http://localhost/&response_type=code&scope=openid&login_hint=" + alice)
	f.Add("client_id=%zz")
	f.Add("")
	f.Fuzz(func(t *testing.T, query string) {
		target := "/" + testTenant + "/oauth2/v2.0/authorize?" + query
		if _, err := url.ParseRequestURI(target); err != nil || strings.ContainsAny(query, " #") {
			return // not a request target
		}
		req := httptest.NewRequest(http.MethodGet, target, nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusFound:
			loc := rec.Header().Get("Location")
			if _, ok := loopbackRedirect(loc); !ok {
				t.Fatalf("redirect to %q, which is not a loopback URI", loc)
			}
		case http.StatusBadRequest:
			if !strings.Contains(rec.Body.String(), "AADSTS") {
				t.Fatalf("error page without AADSTS code: %s", rec.Body.String())
			}
		default:
			t.Fatalf("unexpected status %d", rec.Code)
		}
	})
}

// FuzzClientAssertion: no client assertion but a well-signed one gets a
// token; anything else is a Microsoft JSON error, never a panic or a 5xx.
func FuzzClientAssertion(f *testing.F) {
	p, h := fuzzIdP(f)
	p.AddClient(Client{ID: certID})
	for _, s := range []string{"a.b.c", "eyJhbGciOiJQUzI1NiJ9.e30.", "..", "", "eyJhbGciOiJub25lIn0.eyJpc3MiOiIzMzMzMzMzMy0zMzMzLTMzMzMtMzMzMy0zMzMzMzMzMzMzMzMifQ."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, assertion string) {
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {certID}, "scope": {appScope},
			"client_assertion_type": {jwtBearerAssertion}, "client_assertion": {assertion}}
		req := httptest.NewRequest(http.MethodPost, "/"+testTenant+"/oauth2/v2.0/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var e errorBody
		if rec.Code == http.StatusOK || rec.Code >= 500 || json.Unmarshal(rec.Body.Bytes(), &e) != nil || len(e.ErrorCodes) != 1 {
			t.Fatalf("assertion %q: status %d, body %s", assertion, rec.Code, rec.Body)
		}
	})
}
