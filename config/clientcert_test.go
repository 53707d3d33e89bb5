package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/testidp"
)

// certYAML is validYAML with an app-only provider authenticating with the
// certificate files cert and key (lines: 4 m365, 5 type, 6 flow, 7 tenant,
// 8 client_certificate).
func certYAML(t *testing.T, cert, key string) string {
	return variant(t, "    type: microsoft", "    type: microsoft\n    flow: client_credentials\n    tenant: contoso.onmicrosoft.com\n"+
		"    client_certificate: {cert: "+cert+", key: "+key+"}")
}

func TestClientCertificateValid(t *testing.T) {
	now := time.Now()
	dir := t.TempDir()
	f := testidp.WriteCertificate(t, dir, "app", now.Add(-time.Hour), now.Add(365*24*time.Hour))
	// Relative paths are taken from the configuration's directory.
	src := certYAML(t, "app.pem", "app.key")
	path := filepath.Join(dir, "xoauthd.yaml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	cc := cfg.Providers["m365"].ClientCertificate
	if cc == nil || cc.Cert != f.Cert || cc.Key != f.Key {
		t.Fatalf("client_certificate %+v, want %s and %s", cc, f.Cert, f.Key)
	}
	if w := cfg.Warnings(); len(w) != 0 {
		t.Errorf("warnings for a certificate valid for a year: %v", w)
	}
}

func TestClientCertificateProblems(t *testing.T) {
	now := time.Now()
	dir := t.TempDir()
	a := testidp.WriteCertificate(t, dir, "a", now.Add(-time.Hour), now.Add(time.Hour))
	b := testidp.WriteCertificate(t, dir, "b", now.Add(-time.Hour), now.Add(time.Hour))
	open := filepath.Join(dir, "open.key")
	copyFile(t, a.Key, open, 0o644)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec := testidp.WriteCertificateWithKey(t, dir, "ec", ecKey, now.Add(-time.Hour), now.Add(time.Hour))
	tests := []problemCase{
		{name: "secret and certificate", src: strings.Replace(certYAML(t, a.Cert, a.Key), "    client_certificate:", "    client_secret: x\n    client_certificate:", 1),
			path: "providers.m365.client_certificate", line: 9, msg: "either client_secret or client_certificate, not both"},
		{name: "no key", src: variant(t, "    type: microsoft", "    type: microsoft\n    client_certificate: {cert: "+a.Cert+"}"),
			path: "providers.m365.client_certificate.key", line: 6, msg: "missing; the PEM private key"},
		{name: "key of another certificate", src: certYAML(t, b.Cert, a.Key),
			path: "providers.m365.client_certificate", line: 8, msg: "private key does not match public key"},
		{name: "key readable by others", src: certYAML(t, a.Cert, open),
			path: "providers.m365.client_certificate", line: 8, msg: "chmod 600 " + open},
		{name: "missing file", src: certYAML(t, filepath.Join(dir, "none.pem"), a.Key),
			path: "providers.m365.client_certificate", line: 8, msg: "no such file"},
		{name: "not RSA", src: certYAML(t, ec.Cert, ec.Key),
			path: "providers.m365.client_certificate", line: 8, msg: "Microsoft needs RSA"},
		{name: "google", src: strings.Replace(certYAML(t, a.Cert, a.Key), "type: microsoft\n    flow: client_credentials\n    tenant: contoso.onmicrosoft.com", "type: google", 1),
			path: "providers.m365.client_certificate", line: 6, msg: "for microsoft providers"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { checkOneProblem(t, tc) })
	}
}

func TestClientCertificateExpiryWarnings(t *testing.T) {
	now := time.Now()
	dir := t.TempDir()
	for _, tc := range []struct {
		name     string
		notAfter time.Time
		want     string
	}{
		{"expires in 10 days", now.Add(10 * 24 * time.Hour), "expires on " + now.Add(10*24*time.Hour).UTC().Format(time.DateOnly)},
		{"expired", now.Add(-time.Hour), "expired on " + now.Add(-time.Hour).UTC().Format(time.DateOnly) + ": Microsoft refuses its assertions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := testidp.WriteCertificate(t, dir, strings.ReplaceAll(tc.name, " ", "-"), now.Add(-48*time.Hour), tc.notAfter)
			cfg, ps, _ := parseIn(t, certYAML(t, f.Cert, f.Key))
			if ps != nil {
				t.Fatalf("problems: %v", ps)
			}
			w := cfg.Warnings()
			if len(w) != 1 || w[0].Path != "providers.m365.client_certificate" || w[0].Line != 8 || !strings.Contains(w[0].Msg, tc.want) {
				t.Fatalf("warnings %v, want one on line 8 saying %q", w, tc.want)
			}
		})
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(to, mode); err != nil {
		t.Fatal(err)
	}
}
