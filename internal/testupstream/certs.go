package testupstream

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// ServerName is the DNS name in Dovecot's certificate (it also carries the IP
// addresses 127.0.0.1 and ::1).
const ServerName = "localhost"

// certLifetime is how long the generated certificates are valid; long enough
// for a benchmark run, short enough that a leaked test CA is worthless.
const certLifetime = 7 * 24 * time.Hour

// File names of the generated PEM files inside the rig's directory.
const (
	caFileName   = "ca.pem"
	certFileName = "server.pem"
	keyFileName  = "server.key"
)

// pkiFiles names the PEM files written by writePKI.
type pkiFiles struct {
	caFile, certFile, keyFile string
	pool                      *x509.CertPool
}

// WriteServerPKI writes what writePKI does for another test server (a
// redis-server with TLS): the CA, the server certificate and its key as
// PEM files in dir, and a pool holding the CA.
func WriteServerPKI(dir string) (caFile, certFile, keyFile string, pool *x509.CertPool, err error) {
	p, err := writePKI(dir)
	return p.caFile, p.certFile, p.keyFile, p.pool, err
}

// writePKI generates a CA and a server certificate for ServerName,
// 127.0.0.1 and ::1 (all ECDSA P-256) and writes them as PEM files into dir.
func writePKI(dir string) (pkiFiles, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return pkiFiles{}, fmt.Errorf("generating test CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "xoauthd test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return pkiFiles{}, fmt.Errorf("creating test CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return pkiFiles{}, fmt.Errorf("parsing test CA certificate: %w", err)
	}

	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return pkiFiles{}, fmt.Errorf("generating test server key: %w", err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: ServerName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{ServerName},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return pkiFiles{}, fmt.Errorf("creating test server certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		return pkiFiles{}, fmt.Errorf("encoding test server key: %w", err)
	}

	f := pkiFiles{
		caFile:   filepath.Join(dir, caFileName),
		certFile: filepath.Join(dir, certFileName),
		keyFile:  filepath.Join(dir, keyFileName),
		pool:     x509.NewCertPool(),
	}
	f.pool.AddCert(caCert)
	writes := []struct {
		path  string
		typ   string
		der   []byte
		perm  os.FileMode
		chain []byte
	}{
		{f.caFile, "CERTIFICATE", caDER, 0o644, nil},
		{f.certFile, "CERTIFICATE", srvDER, 0o644, caDER},
		{f.keyFile, "PRIVATE KEY", keyDER, 0o600, nil},
	}
	for _, w := range writes {
		data := pem.EncodeToMemory(&pem.Block{Type: w.typ, Bytes: w.der})
		if w.chain != nil {
			data = append(data, pem.EncodeToMemory(&pem.Block{Type: w.typ, Bytes: w.chain})...)
		}
		if err := os.WriteFile(w.path, data, w.perm); err != nil {
			return pkiFiles{}, fmt.Errorf("writing %s: %w", w.path, err)
		}
	}
	return f, nil
}

// serial returns a random 128-bit certificate serial number.
func serial() *big.Int {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	n, err := rand.Int(rand.Reader, limit)
	if err != nil {
		// crypto/rand does not fail on Linux; a fixed serial is still valid.
		return big.NewInt(1)
	}
	return n
}
