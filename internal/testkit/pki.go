package testkit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// LoopbackNames are the names a test server's certificate carries unless a
// test asks for others: a client may dial it by any of them.
var LoopbackNames = []string{"localhost", "127.0.0.1", "::1"}

// CA is a throwaway certificate authority (ECDSA P-256) that issues server
// certificates for loopback tests and rigs.
type CA struct {
	// Cert is the CA certificate; Key signs what it issues.
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// GenerateCA makes a CA named name, valid from an hour ago for lifetime.
// Rigs that run outside a test (the demo's upstream) use it; tests use
// NewCA.
func GenerateCA(name string, lifetime time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the key of %s: %w", name, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("signing the certificate of %s: %w", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing the certificate of %s: %w", name, err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// NewCA makes a CA for one test, valid for a day; it fails t when that is
// impossible.
func NewCA(t testing.TB) *CA {
	t.Helper()
	ca, err := GenerateCA("xoauthd test CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// Issue signs a server certificate for names (DNS names or IP addresses;
// LoopbackNames when there are none), valid from notBefore to notAfter. The
// returned certificate's chain holds the leaf only.
func (ca *CA) Issue(notBefore, notAfter time.Time, names ...string) (tls.Certificate, error) {
	if len(names) == 0 {
		names = LoopbackNames
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generating a server key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("signing a server certificate for %v: %w", names, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parsing a server certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// ServerCert signs a server certificate for names (LoopbackNames when
// there are none) valid as long as the CA.
func (ca *CA) ServerCert(names ...string) (tls.Certificate, error) {
	return ca.Issue(ca.Cert.NotBefore, ca.Cert.NotAfter, names...)
}

// Leaf is ServerCert for a test: it fails t when signing fails.
func (ca *CA) Leaf(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	c, err := ca.ServerCert(names...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// LeafBetween is Leaf valid from notBefore to notAfter only, for tests of
// certificates that are expired or not valid yet.
func (ca *CA) LeafBetween(t testing.TB, notBefore, notAfter time.Time, names ...string) tls.Certificate {
	t.Helper()
	c, err := ca.Issue(notBefore, notAfter, names...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ServerConfig is a TLS configuration for a loopback server presenting a
// Leaf for names.
func (ca *CA) ServerConfig(t testing.TB, names ...string) *tls.Config {
	t.Helper()
	return &tls.Config{Certificates: []tls.Certificate{ca.Leaf(t, names...)}, MinVersion: tls.VersionTLS12}
}

// ClientConfig is a TLS configuration for a client that trusts this CA only
// and expects serverName.
func (ca *CA) ClientConfig(serverName string) *tls.Config {
	return &tls.Config{RootCAs: ca.Pool(), ServerName: serverName, MinVersion: tls.VersionTLS12}
}

// Pool returns a certificate pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// PEM returns the CA certificate in PEM.
func (ca *CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// WriteCAFile writes the CA certificate in PEM to a file in a temporary
// directory of t (for a ca_file setting) and returns its path.
func (ca *CA) WriteCAFile(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, ca.PEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// WriteKeyPair writes cert's chain (leaf first, then chain, as a server
// presents it) in PEM to certFile (mode 0644) and its private key in
// PKCS #8 PEM to keyFile (mode 0600).
func WriteKeyPair(certFile, keyFile string, cert tls.Certificate, chain ...*x509.Certificate) error {
	var certs []byte
	for _, der := range cert.Certificate {
		certs = append(certs, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	for _, c := range chain {
		certs = append(certs, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return fmt.Errorf("encoding the key for %s: %w", keyFile, err)
	}
	if err := os.WriteFile(certFile, certs, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", certFile, err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", keyFile, err)
	}
	return nil
}

// serial returns a random 128-bit certificate serial number.
func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		// crypto/rand does not fail on Linux; a fixed serial is still valid.
		return big.NewInt(1)
	}
	return n
}

// PKI is what most tests of a TLS peer need: a CA, its certificate in a
// file (for a ca_file setting) and a server configuration presenting a
// certificate for LoopbackNames.
type PKI struct {
	*CA
	CAFile string
	Server *tls.Config
}

// NewPKI makes a PKI for one test.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	ca := NewCA(t)
	return &PKI{CA: ca, CAFile: ca.WriteCAFile(t), Server: ca.ServerConfig(t)}
}

// TLSPair is what a test of a server's own TLS needs: a server
// configuration with a certificate for LoopbackNames from a new CA, and a
// client configuration that trusts that CA only and expects 127.0.0.1.
func TLSPair(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	ca := NewCA(t)
	return ca.ServerConfig(t), ca.ClientConfig("127.0.0.1")
}
