package testkit

import (
	"crypto/tls"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// handshake runs a TLS handshake over loopback TCP (buffered, unlike a
// pipe, so a client that aborts can still send its alert) and returns the
// client's error.
func handshake(t *testing.T, server, client *tls.Config) error {
	t.Helper()
	addr := ServeOne(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_ = tls.Server(c, server).Handshake()
	})
	c, err := tls.Dial("tcp", addr, client)
	if err == nil {
		c.Close()
	}
	return err
}

func TestPKIServesEveryLoopbackNameToClientsOfItsCAOnly(t *testing.T) {
	p := NewPKI(t)
	for _, name := range LoopbackNames {
		if err := handshake(t, p.Server, p.ClientConfig(name)); err != nil {
			t.Errorf("client expecting %s: %v", name, err)
		}
	}
	other := NewCA(t)
	if err := handshake(t, p.Server, other.ClientConfig("localhost")); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("a client of another CA got %v, want an unknown authority", err)
	}
	now := time.Now()
	expired := &tls.Config{Certificates: []tls.Certificate{p.LeafBetween(t, now.Add(-2*time.Hour), now.Add(-time.Hour))}}
	if err := handshake(t, expired, p.ClientConfig("localhost")); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("an expired certificate gave %v", err)
	}
}

func TestWriteKeyPairLoads(t *testing.T) {
	ca := NewCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := WriteKeyPair(certFile, keyFile, ca.Leaf(t, "mail.example.test"), ca.Cert); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(cert.Certificate) != 2 {
		t.Fatalf("chain of %d certificates, want leaf and CA", len(cert.Certificate))
	}
	if err := handshake(t, &tls.Config{Certificates: []tls.Certificate{cert}}, ca.ClientConfig("mail.example.test")); err != nil {
		t.Fatal(err)
	}
}
