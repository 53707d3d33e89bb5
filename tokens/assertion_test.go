package tokens

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/testidp"
)

const certClient = "33333333-3333-3333-3333-333333333333"

// certProvider is a microsoft client-credentials provider authenticating
// with the certificate files f.
func certProvider(idp *testidp.IdP, f testidp.CertificateFiles) *config.Provider {
	p := msProvider(idp, certClient, "", config.FlowClientCredentials)
	p.ClientCertificate = &config.ClientCertificate{Cert: f.Cert, Key: f.Key}
	return p
}

// newCertIdP starts an IdP on which the app certClient has the
// certificate of registered.
func newCertIdP(t *testing.T, opts testidp.Options, registered ...testidp.CertificateFiles) *testidp.IdP {
	idp := newIdP(t, opts)
	c := testidp.Client{ID: certClient}
	for _, f := range registered {
		c.Certificates = append(c.Certificates, f.X509)
	}
	idp.AddClient(c)
	return idp
}

// decodeJWT returns the header and claims of a compact JWT.
func decodeJWT(t *testing.T, s string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		t.Fatalf("assertion %q is not a JWS", s)
	}
	for i, v := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil || json.Unmarshal(b, v) != nil {
			t.Fatalf("part %d of the assertion is not base64url JSON", i)
		}
	}
	return header, claims
}

func TestClientCertificateAssertion(t *testing.T) {
	now := time.Now()
	dir := t.TempDir()
	f := testidp.WriteCertificate(t, dir, "app", now.Add(-time.Hour), now.Add(90*24*time.Hour))
	idp := newCertIdP(t, testidp.Options{}, f)
	store, _ := newStore(t)
	rt := &recordingTransport{}
	prov := certProvider(idp, f)
	m := NewManager(store, providersFor(prov), Options{HTTPClient: &http.Client{Transport: rt}})
	tok, err := m.Token(ctxT(t), "shared@contoso.onmicrosoft.com")
	if err != nil || tok == "" {
		t.Fatalf("Token = %q, %v", tok, err)
	}
	form := rt.lastForm()
	if form.Get("client_assertion_type") != ClientAssertionType || form.Has("client_secret") || form.Get("client_id") != certClient {
		t.Fatalf("form %v: want client_id, client_assertion_type jwt-bearer and no client_secret", form)
	}
	h, c := decodeJWT(t, form.Get("client_assertion"))
	thumb := sha256.Sum256(f.X509.Raw)
	tokenURL := idp.Authority() + "/" + idp.Tenant() + "/oauth2/v2.0/token"
	if h["alg"] != "PS256" || h["typ"] != "JWT" || h["x5t#S256"] != base64.RawURLEncoding.EncodeToString(thumb[:]) {
		t.Errorf("header %v: want PS256, JWT and the certificate's SHA-256 thumbprint", h)
	}
	if c["aud"] != tokenURL || c["iss"] != certClient || c["sub"] != certClient {
		t.Errorf("claims %v: want aud %s and iss = sub = client_id", c, tokenURL)
	}
	nbf, exp, iat := c["nbf"].(float64), c["exp"].(float64), c["iat"].(float64)
	if exp-nbf != assertionLifetime.Seconds() || iat != nbf || time.Since(time.Unix(int64(nbf), 0)) > time.Minute {
		t.Errorf("nbf %v iat %v exp %v: want now, now and %v later", nbf, iat, exp, assertionLifetime)
	}
	first := c["jti"]
	// Each request has its own assertion.
	if _, err := m.Refresh(ctxT(t), "shared@contoso.onmicrosoft.com", tok); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if rt.count() < 2 {
		t.Fatalf("%d token requests, want a second one", rt.count())
	}
	if _, c2 := decodeJWT(t, rt.lastForm().Get("client_assertion")); c2["jti"] == first || c2["jti"] == "" {
		t.Errorf("second request's jti %v, want a new one (first %v)", c2["jti"], first)
	}

	// The files are read at each request: a renewed certificate, also
	// registered, is used at once.
	renewed := testidp.WriteCertificate(t, t.TempDir(), "renewed", now.Add(-time.Hour), now.Add(365*24*time.Hour))
	idp.AddClient(testidp.Client{ID: certClient, Certificates: []*x509.Certificate{f.X509, renewed.X509}})
	for _, pair := range [][2]string{{renewed.Cert, f.Cert}, {renewed.Key, f.Key}} {
		b, err := os.ReadFile(pair[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(pair[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sent := rt.count()
	if cur, err := m.Token(ctxT(t), "shared@contoso.onmicrosoft.com"); err != nil {
		t.Fatal(err)
	} else if _, err := m.Refresh(ctxT(t), "shared@contoso.onmicrosoft.com", cur); err != nil {
		t.Fatalf("Refresh after renewal: %v", err)
	}
	if rt.count() == sent {
		t.Fatal("no token request after the renewal")
	}
	h3, _ := decodeJWT(t, rt.lastForm().Get("client_assertion"))
	if s := sha256.Sum256(renewed.X509.Raw); h3["x5t#S256"] != base64.RawURLEncoding.EncodeToString(s[:]) {
		t.Error("after the files were replaced, the assertion still names the old certificate")
	}
}

// replayTransport sends the first client assertion it saw again on every
// later request, as a proxy repeating requests would.
type replayTransport struct {
	mu    sync.Mutex
	first string
}

func (rt *replayTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	form, _ := url.ParseQuery(string(b))
	rt.mu.Lock()
	if rt.first == "" {
		rt.first = form.Get("client_assertion")
	} else {
		form.Set("client_assertion", rt.first)
	}
	rt.mu.Unlock()
	body := form.Encode()
	r = r.Clone(r.Context())
	r.Body = io.NopCloser(bytes.NewReader([]byte(body)))
	r.ContentLength = int64(len(body))
	return http.DefaultTransport.RoundTrip(r)
}

// TestClientCertificateRefused: the test IdP refuses a certificate it does
// not know, an assertion for another audience, an expired one and a
// replayed one, each with its AADSTS code; xoauthd reports each as a
// configuration error with that code, its meaning and its fix.
func TestClientCertificateRefused(t *testing.T) {
	now := time.Now()
	dir := t.TempDir()
	registered := testidp.WriteCertificate(t, dir, "app", now.Add(-time.Hour), now.Add(90*24*time.Hour))
	stranger := testidp.WriteCertificate(t, dir, "stranger", now.Add(-time.Hour), now.Add(90*24*time.Hour))
	cases := []struct {
		name    string
		skew    time.Duration
		files   testidp.CertificateFiles
		edit    func(p *config.Provider)
		replay  bool
		code    string
		meaning string
		fix     string
	}{
		{name: "wrong key", files: stranger, code: "AADSTS700027", meaning: "not registered on the app", fix: "Certificates & secrets"},
		{name: "wrong audience", files: registered, edit: func(p *config.Provider) {
			p.TokenURL = strings.Replace(p.Authority, "127.0.0.1", "localhost", 1) + "/" + p.Tenant + "/oauth2/v2.0/token"
		}, code: "AADSTS700023", meaning: "audience", fix: "leave token_url and authority unset"},
		{name: "expired", skew: time.Hour, files: registered, code: "AADSTS700024", meaning: "valid time range", fix: "clock (NTP)"},
		{name: "replayed", files: registered, replay: true, code: "AADSTS50013", meaning: "replayed", fix: "repeats requests"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			idp := newCertIdP(t, testidp.Options{ClockSkew: tc.skew}, registered)
			prov := certProvider(idp, tc.files)
			if tc.edit != nil {
				tc.edit(prov)
			}
			store, _ := newStore(t)
			opts := Options{}
			if tc.replay {
				opts.HTTPClient = &http.Client{Transport: &replayTransport{}}
			}
			m := NewManager(store, providersFor(prov), opts)
			tok, err := m.Token(ctxT(t), "shared@contoso.onmicrosoft.com")
			if tc.replay {
				if err != nil {
					t.Fatalf("first request: %v", err)
				}
				_, err = m.Refresh(ctxT(t), "shared@contoso.onmicrosoft.com", tok)
			}
			expectKind(t, err, ErrConfiguration, tc.code)
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Code != tc.code || !strings.Contains(ce.Meaning, tc.meaning) || !strings.Contains(ce.Fix, tc.fix) {
				t.Fatalf("error %v: want code %s, a meaning with %q and a fix with %q", err, tc.code, tc.meaning, tc.fix)
			}
		})
	}
}

// TestClientCertificateFilesRefused: a key readable by others, or a key
// that is not the certificate's, is refused before any request.
func TestClientCertificateFilesRefused(t *testing.T) {
	now := time.Now()
	dir := t.TempDir()
	a := testidp.WriteCertificate(t, dir, "a", now.Add(-time.Hour), now.Add(time.Hour))
	b := testidp.WriteCertificate(t, dir, "b", now.Add(-time.Hour), now.Add(time.Hour))
	idp := newCertIdP(t, testidp.Options{}, a)
	open := testidp.CertificateFiles{Cert: a.Cert, Key: a.Key}
	if err := os.Chmod(a.Key, 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(a.Key, 0o600)
	cases := []struct {
		name  string
		files testidp.CertificateFiles
		want  string
	}{
		{"key readable by others", open, "chmod 600"},
		{"key of another certificate", testidp.CertificateFiles{Cert: b.Cert, Key: a.Key}, "private key does not match public key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "key of another certificate" {
				os.Chmod(a.Key, 0o600)
			}
			store, _ := newStore(t)
			m := NewManager(store, providersFor(certProvider(idp, tc.files)), Options{})
			before := idp.Counts()["client_credentials"]
			_, err := m.Token(ctxT(t), "shared@contoso.onmicrosoft.com")
			expectKind(t, err, ErrConfiguration, "")
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if n := idp.Counts()["client_credentials"]; n != before {
				t.Errorf("%d requests reached the IdP, want none", n-before)
			}
		})
	}
}

func (rt *recordingTransport) count() int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return len(rt.forms)
}
