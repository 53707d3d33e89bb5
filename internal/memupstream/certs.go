package memupstream

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/xoauthd/xoauthd/internal/testkit"
)

// ServerName is the DNS name in the server certificate (which also carries
// the IP addresses 127.0.0.1 and ::1).
const ServerName = "localhost"

// certLifetime is how long the generated certificates are valid: long enough
// for a demo session, short enough that a leaked test CA is worthless.
const certLifetime = 30 * 24 * time.Hour

// pki is an ephemeral CA and the server certificate it signed.
type pki struct {
	caPEM  []byte
	pool   *x509.CertPool
	server tls.Certificate
}

// newPKI generates a CA and a server certificate for ServerName, 127.0.0.1
// and ::1, valid from an hour ago for certLifetime.
func newPKI() (*pki, error) {
	ca, err := testkit.GenerateCA("memupstream test CA", certLifetime)
	if err != nil {
		return nil, err
	}
	server, err := ca.ServerCert(ServerName, "127.0.0.1", "::1")
	if err != nil {
		return nil, fmt.Errorf("making the memupstream certificate: %w", err)
	}
	return &pki{caPEM: ca.PEM(), pool: ca.Pool(), server: server}, nil
}
