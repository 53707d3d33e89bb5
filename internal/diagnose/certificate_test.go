package diagnose

import (
	"context"
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/testidp"
	"github.com/xoauthd/xoauthd/tokens"
)

// TestCertificateExplanations: what check and the log say when the test
// identity provider refuses a client assertion: the AADSTS code, the cause
// and the fix.
func TestCertificateExplanations(t *testing.T) {
	const app = "33333333-3333-3333-3333-333333333333"
	now := time.Now()
	dir := t.TempDir()
	registered := testidp.WriteCertificate(t, dir, "app", now.Add(-time.Hour), now.Add(24*time.Hour))
	stranger := testidp.WriteCertificate(t, dir, "stranger", now.Add(-time.Hour), now.Add(24*time.Hour))
	cases := []struct {
		name  string
		skew  time.Duration
		files testidp.CertificateFiles
		aud   bool // post to a token_url that is not the IdP's own name for it
		code  string
		fix   string
	}{
		{"unregistered certificate", 0, stranger, false, "AADSTS700027", "Upload the certificate file named by client_certificate.cert"},
		{"wrong audience", 0, registered, true, "AADSTS700023", "Leave token_url and authority unset"},
		{"expired assertion", time.Hour, registered, false, "AADSTS700024", "Check this machine's clock (NTP)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			idp := testidp.New(t, testidp.Options{ClockSkew: tc.skew})
			idp.AddClient(testidp.Client{ID: app, Certificates: []*x509.Certificate{registered.X509}})
			prov := &config.Provider{Name: "app", Type: "microsoft", Tenant: idp.Tenant(), ClientID: app,
				Flow: config.FlowClientCredentials, Authority: idp.Authority(),
				ClientCertificate: &config.ClientCertificate{Cert: tc.files.Cert, Key: tc.files.Key}}
			if tc.aud {
				prov.TokenURL = strings.Replace(idp.Authority(), "127.0.0.1", "localhost", 1) + "/" + idp.Tenant() + "/oauth2/v2.0/token"
			}
			store, err := tokens.OpenStore(filepath.Join(t.TempDir(), "tokens.json"), make([]byte, tokens.KeySize))
			if err != nil {
				t.Fatal(err)
			}
			m := tokens.NewManager(store, func(string) (*config.Provider, error) { return prov, nil }, tokens.Options{})
			_, err = m.Token(context.Background(), "scans@contoso.com")
			e, ok := Explain(err, Account{Identity: "scans@contoso.com"})
			if !ok || e.Code != tc.code || e.Kind != KindConfig || !strings.Contains(e.Fix, tc.fix) {
				t.Fatalf("explanation %#v (ok %v) of %v; want %s with a fix saying %q", e, ok, err, tc.code, tc.fix)
			}
		})
	}
}
