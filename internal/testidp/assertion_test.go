package testidp

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

const certID = "33333333-3333-3333-3333-333333333333"

// testAssertion is a client assertion to sign for a test; zero fields take
// good values.
type testAssertion struct {
	alg        string // PS256 (default) or RS256
	sha1Thumb  bool   // name the certificate by x5t instead of x5t#S256
	thumbOf    *tls.Certificate
	aud        string
	iss, sub   string
	jti        string
	nbf, exp   time.Time
	noJTI      bool
	signedWith *rsa.PrivateKey
}

// sign makes the compact JWS of a with pair's key (or signedWith).
func (a testAssertion) sign(t *testing.T, pair *tls.Certificate) string {
	t.Helper()
	thumbCert := pair
	if a.thumbOf != nil {
		thumbCert = a.thumbOf
	}
	h := map[string]string{"alg": "PS256", "typ": "JWT"}
	if a.alg != "" {
		h["alg"] = a.alg
	}
	if a.sha1Thumb {
		s := sha1.Sum(thumbCert.Leaf.Raw)
		h["x5t"] = base64.RawURLEncoding.EncodeToString(s[:])
	} else {
		s := sha256.Sum256(thumbCert.Leaf.Raw)
		h["x5t#S256"] = base64.RawURLEncoding.EncodeToString(s[:])
	}
	c := map[string]any{"aud": a.aud, "iss": a.iss, "sub": a.sub, "nbf": a.nbf.Unix(), "exp": a.exp.Unix()}
	if !a.noJTI {
		c["jti"] = a.jti
	}
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signed := enc(h) + "." + enc(c)
	key := pair.PrivateKey.(*rsa.PrivateKey)
	if a.signedWith != nil {
		key = a.signedWith
	}
	d := sha256.Sum256([]byte(signed))
	var sig []byte
	var err error
	if h["alg"] == "RS256" {
		sig, err = rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, d[:])
	} else {
		sig, err = rsa.SignPSS(rand.Reader, key, crypto.SHA256, d[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	}
	if err != nil {
		t.Fatal(err)
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// loadPair reads files written by WriteCertificate.
func loadPair(t *testing.T, f CertificateFiles) *tls.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	pair.Leaf = f.X509
	return &pair
}

func TestClientAssertions(t *testing.T) {
	p, clk := setupClock(t, Options{})
	now := clk.Now()
	dir := t.TempDir()
	registered := WriteCertificate(t, dir, "app", now.Add(-time.Hour), now.Add(365*24*time.Hour))
	other := WriteCertificate(t, dir, "other", now.Add(-time.Hour), now.Add(365*24*time.Hour))
	p.AddClient(Client{ID: certID, Certificates: []*x509.Certificate{registered.X509}})
	good, stranger := loadPair(t, registered), loadPair(t, other)
	tokenURL := endpoint(p, testTenant, "token")
	base := testAssertion{aud: tokenURL, iss: certID, sub: certID, nbf: now, exp: now.Add(5 * time.Minute)}
	with := func(edit func(a *testAssertion)) testAssertion { a := base; edit(&a); return a }

	cases := []struct {
		name string
		a    testAssertion
		pair *tls.Certificate
		code int // 0: a token
	}{
		{"PS256 with x5t#S256", with(func(a *testAssertion) { a.jti = "j-1" }), good, 0},
		{"RS256 with x5t", with(func(a *testAssertion) { a.jti = "j-2"; a.alg = "RS256"; a.sha1Thumb = true }), good, 0},
		{"aud with the tenant GUID", with(func(a *testAssertion) { a.jti = "j-3"; a.aud = endpoint(p, p.TenantID(), "token") }), good, 0},
		{"replayed jti", with(func(a *testAssertion) { a.jti = "j-1" }), good, 50013},
		{"unregistered certificate", with(func(a *testAssertion) { a.jti = "j-4" }), stranger, 700027},
		{"registered thumbprint, other key", with(func(a *testAssertion) {
			a.jti = "j-5"
			a.signedWith = stranger.PrivateKey.(*rsa.PrivateKey)
		}), good, 700027},
		{"wrong audience", with(func(a *testAssertion) { a.jti = "j-6"; a.aud = strings.Replace(tokenURL, "127.0.0.1", "localhost", 1) }), good, 700023},
		{"other tenant's endpoint", with(func(a *testAssertion) { a.jti = "j-7"; a.aud = endpoint(p, "fabrikam.onmicrosoft.com", "token") }), good, 700023},
		{"issuer not the client", with(func(a *testAssertion) { a.jti = "j-8"; a.iss = confID }), good, 700021},
		{"subject not the client", with(func(a *testAssertion) { a.jti = "j-9"; a.sub = confID }), good, 700021},
		{"expired", with(func(a *testAssertion) {
			a.jti = "j-10"
			a.nbf = now.Add(-20 * time.Minute)
			a.exp = now.Add(-10 * time.Minute)
		}), good, 700024},
		{"not yet valid", with(func(a *testAssertion) {
			a.jti = "j-11"
			a.nbf = now.Add(10 * time.Minute)
			a.exp = now.Add(15 * time.Minute)
		}), good, 700024},
		{"no jti", with(func(a *testAssertion) { a.noJTI = true }), good, 50027},
		{"alg HS256", with(func(a *testAssertion) { a.jti = "j-12"; a.alg = "HS256" }), good, 50027},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			form := url.Values{"grant_type": {"client_credentials"}, "client_id": {certID}, "scope": {appScope},
				"client_assertion_type": {jwtBearerAssertion}, "client_assertion": {tc.a.sign(t, tc.pair)}}
			r := post(t, tokenURL, form, nil)
			if tc.code == 0 {
				var body tokenBody
				if r.status != http.StatusOK || json.Unmarshal(r.body, &body) != nil || body.AccessToken == "" {
					t.Fatalf("status %d, body %s; want a token", r.status, r.body)
				}
				return
			}
			e := wantError(t, r, 401, "invalid_client", tc.code)
			if e.TraceID == "" || e.CorrelationID == "" || e.Timestamp == "" {
				t.Errorf("error %+v lacks Microsoft's trace fields", e)
			}
		})
	}
}

func TestClientAssertionRequestErrors(t *testing.T) {
	p := setup(t, Options{})
	now := time.Now()
	f := WriteCertificate(t, t.TempDir(), "app", now.Add(-time.Hour), now.Add(time.Hour))
	p.AddClient(Client{ID: certID, Certificates: []*x509.Certificate{f.X509}})
	pair := loadPair(t, f)
	tokenURL := endpoint(p, testTenant, "token")
	a := testAssertion{aud: tokenURL, iss: certID, sub: certID, jti: "x", nbf: now, exp: now.Add(time.Minute)}
	good := a.sign(t, pair)
	cases := []struct {
		name   string
		form   url.Values
		status int
		err    string
		code   int
	}{
		{"no assertion type", url.Values{"client_id": {certID}, "client_assertion": {good}}, 400, "invalid_request", 900144},
		{"wrong assertion type", url.Values{"client_id": {certID}, "client_assertion_type": {"urn:x"}, "client_assertion": {good}}, 401, "invalid_client", 50027},
		{"not a JWT", url.Values{"client_id": {certID}, "client_assertion_type": {jwtBearerAssertion}, "client_assertion": {"abc"}}, 401, "invalid_client", 50027},
		{"public client", url.Values{"client_id": {publicID}, "client_assertion_type": {jwtBearerAssertion}, "client_assertion": {good}}, 401, "invalid_client", 700025},
		{"neither secret nor assertion", url.Values{"client_id": {certID}}, 401, "invalid_client", 7000218},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.form.Set("grant_type", "client_credentials")
			tc.form.Set("scope", appScope)
			wantError(t, post(t, tokenURL, tc.form, nil), tc.status, tc.err, tc.code)
		})
	}
}

// TestClientAssertionClockSkew: an IdP whose clock is ahead (the machine's
// is behind) refuses an assertion made now as expired.
func TestClientAssertionClockSkew(t *testing.T) {
	p := setup(t, Options{ClockSkew: time.Hour})
	now := time.Now()
	f := WriteCertificate(t, t.TempDir(), "app", now.Add(-time.Hour), now.Add(2*time.Hour))
	p.AddClient(Client{ID: certID, Certificates: []*x509.Certificate{f.X509}})
	tokenURL := endpoint(p, testTenant, "token")
	a := testAssertion{aud: tokenURL, iss: certID, sub: certID, jti: "skew", nbf: now, exp: now.Add(5 * time.Minute)}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {certID}, "scope": {appScope},
		"client_assertion_type": {jwtBearerAssertion}, "client_assertion": {a.sign(t, loadPair(t, f))}}
	e := wantError(t, post(t, tokenURL, form, nil), 401, "invalid_client", 700024)
	if !strings.Contains(e.ErrorDescription, "not within its valid time range") {
		t.Errorf("description %q", e.ErrorDescription)
	}
}
