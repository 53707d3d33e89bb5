package testidp

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// New starts an IdP for a test and closes it when the test ends.
func New(t testing.TB, opts Options) *IdP {
	t.Helper()
	p, err := Start(opts)
	if err != nil {
		t.Fatalf("starting test identity provider: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// CertificateFiles is an app certificate written for a test: the PEM files
// a provider's client_certificate names (the key with mode 0600), and the
// certificate to register on a Client.
type CertificateFiles struct {
	Cert, Key string
	X509      *x509.Certificate
}

// WriteCertificate makes a self-signed certificate with a 2048-bit RSA key,
// valid from notBefore to notAfter, and writes it to name.pem and name.key
// in dir, as `openssl req -x509 -newkey rsa:2048` would for an app
// registration.
func WriteCertificate(t testing.TB, dir, name string, notBefore, notAfter time.Time) CertificateFiles {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return WriteCertificateWithKey(t, dir, name, key, notBefore, notAfter)
}

// WriteCertificateWithKey is WriteCertificate with a key of the test's
// choosing (an ECDSA key, say, that Microsoft would refuse).
func WriteCertificateWithKey(t testing.TB, dir, name string, key crypto.Signer, notBefore, notAfter time.Time) CertificateFiles {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(notBefore.UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	f := CertificateFiles{Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+".key"), X509: cert}
	if err := os.WriteFile(f.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.Key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}
