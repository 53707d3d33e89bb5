package testupstream

import (
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/xoauthd/xoauthd/internal/testkit"
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
// 127.0.0.1 and ::1 and writes them as PEM files into dir (the server
// certificate followed by the CA, as Dovecot presents it).
func writePKI(dir string) (pkiFiles, error) {
	ca, err := testkit.GenerateCA("xoauthd test CA", certLifetime)
	if err != nil {
		return pkiFiles{}, err
	}
	server, err := ca.ServerCert(ServerName, "127.0.0.1", "::1")
	if err != nil {
		return pkiFiles{}, fmt.Errorf("making Dovecot's certificate: %w", err)
	}
	f := pkiFiles{
		caFile:   filepath.Join(dir, caFileName),
		certFile: filepath.Join(dir, certFileName),
		keyFile:  filepath.Join(dir, keyFileName),
		pool:     ca.Pool(),
	}
	if err := os.WriteFile(f.caFile, ca.PEM(), 0o644); err != nil {
		return pkiFiles{}, fmt.Errorf("writing %s: %w", f.caFile, err)
	}
	if err := testkit.WriteKeyPair(f.certFile, f.keyFile, server, ca.Cert); err != nil {
		return pkiFiles{}, err
	}
	return f, nil
}
