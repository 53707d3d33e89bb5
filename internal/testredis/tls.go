package testredis

import (
	"crypto/tls"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/xoauthd/xoauthd/internal/testupstream"
)

// StartTLS starts a redis-server that speaks only TLS, with a certificate
// for 127.0.0.1 from a test CA (CAFile; the one testupstream makes for
// Dovecot), and stops it when the test ends. Its URL is rediss://.
func StartTLS(t testing.TB) *Server {
	t.Helper()
	s := newServer(t)
	caFile, certFile, keyFile, pool, err := testupstream.WriteServerPKI(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	s.caFile = caFile
	s.tlsConf = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	s.args = []string{"--bind", "127.0.0.1", "--port", "0", "--tls-port", strconv.Itoa(s.port), "--dir", s.dir,
		"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-cert-file", caFile,
		"--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--daemonize", "no",
		"--logfile", filepath.Join(s.dir, "redis.log")}
	s.run(t)
	return s
}

// CAFile is the PEM file of the CA that signed a TLS server's certificate
// ("" for a server without TLS).
func (s *Server) CAFile() string { return s.caFile }
