package localtls

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/testkit"
)

func newLog() (*testkit.SyncBuffer, *slog.Logger) {
	b := &testkit.SyncBuffer{}
	return b, slog.New(slog.NewTextHandler(b, nil))
}

// writePair writes a certificate for names, signed by its own new key,
// and that key to certFile and keyFile; it returns the certificate.
func writePair(t testing.TB, certFile, keyFile string, notAfter time.Time, names ...string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, DNSNames: names,
	}
	return writeSelfSigned(t, certFile, keyFile, tmpl, key)
}

// writeSelfSigned signs tmpl with key and writes the certificate and the
// key as PEM files.
func writeSelfSigned(t testing.TB, certFile, keyFile string, tmpl *x509.Certificate, key crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// handshake runs a TLS handshake against cfg and returns the certificate
// the client was shown, verified against roots for serverName.
func handshake(t *testing.T, cfg *tls.Config, roots *x509.CertPool, serverName string) (*x509.Certificate, error) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	errc := make(chan error, 1)
	go func() {
		srv := tls.Server(a, cfg)
		errc <- srv.Handshake()
	}()
	cl := tls.Client(b, &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12})
	if err := cl.Handshake(); err != nil {
		a.Close()
		<-errc
		return nil, err
	}
	if err := <-errc; err != nil {
		return nil, err
	}
	return cl.ConnectionState().PeerCertificates[0], nil
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func TestLoadServesAndLogsFingerprint(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	want := writePair(t, cf, kf, time.Now().Add(24*time.Hour), "mail.example.test")
	logs, log := newLog()
	c, err := Load(cf, kf, log)
	if err != nil {
		t.Fatal(err)
	}
	got, err := handshake(t, c.ServerConfig(), pool(want), "mail.example.test")
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if !got.Equal(want) {
		t.Fatal("the client was shown another certificate")
	}
	fp := c.Fingerprint()
	if !regexp.MustCompile(`^([0-9A-F]{2}:){31}[0-9A-F]{2}$`).MatchString(fp) {
		t.Fatalf("fingerprint %q is not 32 hex pairs", fp)
	}
	for _, s := range []string{"local TLS certificate loaded", "sha256=" + fp, "names=mail.example.test"} {
		if !strings.Contains(logs.String(), s) {
			t.Errorf("log lacks %q:\n%s", s, logs)
		}
	}
	if cfg := c.ServerConfig(); cfg.MinVersion != tls.VersionTLS12 || cfg.ClientAuth != tls.NoClientCert {
		t.Errorf("config: min version %x, client auth %v", cfg.MinVersion, cfg.ClientAuth)
	}
}

func TestLoadFailures(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	writePair(t, cf, kf, time.Now().Add(time.Hour), "a.test")
	otherC, otherK := filepath.Join(dir, "c2.pem"), filepath.Join(dir, "k2.pem")
	writePair(t, otherC, otherK, time.Now().Add(time.Hour), "b.test")
	big := filepath.Join(dir, "big.pem")
	if err := os.WriteFile(big, bytes.Repeat([]byte("A"), maxPEMBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, cert, key, want string
	}{
		{"missing cert", filepath.Join(dir, "none.pem"), kf, "tls.cert"},
		{"missing key", cf, filepath.Join(dir, "none.pem"), "tls.key"},
		{"key of another certificate", cf, otherK, "private key does not match"},
		{"cert too large", big, kf, "too large"},
		{"cert not PEM", garbage, kf, "hint: both must be PEM"},
		{"key swapped for cert", cf, cf, "hint: both must be PEM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(tt.cert, tt.key, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load = %v, %v; want an error with %q", c, err, tt.want)
			}
		})
	}
}

func TestLoadWarnsAboutExpired(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	writePair(t, cf, kf, time.Now().Add(-time.Minute), "old.test")
	logs, log := newLog()
	if _, err := Load(cf, kf, log); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "has expired") {
		t.Fatalf("no warning about the expired certificate:\n%s", logs)
	}
}

// TestReloadOnChangedFiles: renewed files under the same paths are served
// from the next handshake after the recheck interval; a replacement that
// does not load keeps the old certificate and is logged once.
func TestReloadOnChangedFiles(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	first := writePair(t, cf, kf, time.Now().Add(time.Hour), "mail.test")
	logs, log := newLog()
	c, err := Load(cf, kf, log)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c.now = func() time.Time { return now }

	second := writePair(t, cf, kf, time.Now().Add(2*time.Hour), "mail.test")
	// Within the recheck interval the files are not looked at.
	if got, err := handshake(t, c.ServerConfig(), pool(first), "mail.test"); err != nil || !got.Equal(first) {
		t.Fatalf("within the recheck interval: %v (new certificate served too early?)", err)
	}
	now = now.Add(recheckInterval)
	if got, err := handshake(t, c.ServerConfig(), pool(second), "mail.test"); err != nil || !got.Equal(second) {
		t.Fatalf("after the recheck interval: %v, want the renewed certificate", err)
	}
	if !strings.Contains(logs.String(), "local TLS certificate reloaded") {
		t.Fatalf("reload not logged:\n%s", logs)
	}

	// A broken replacement: the old certificate stays, one warning.
	if err := os.WriteFile(kf, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		now = now.Add(recheckInterval)
		if got, err := handshake(t, c.ServerConfig(), pool(second), "mail.test"); err != nil || !got.Equal(second) {
			t.Fatalf("with a broken key file: %v, want the previous certificate", err)
		}
	}
	if n := strings.Count(logs.String(), "do not load"); n != 1 {
		t.Fatalf("%d warnings about the broken files, want 1:\n%s", n, logs)
	}
	// Fixed again: picked up.
	third := writePair(t, cf, kf, time.Now().Add(3*time.Hour), "mail.test")
	now = now.Add(recheckInterval)
	if got, err := handshake(t, c.ServerConfig(), pool(third), "mail.test"); err != nil || !got.Equal(third) {
		t.Fatalf("after fixing the files: %v", err)
	}
	// Files missing for a moment (being replaced): the old one stays.
	if err := os.Remove(cf); err != nil {
		t.Fatal(err)
	}
	now = now.Add(recheckInterval)
	if got, err := handshake(t, c.ServerConfig(), pool(third), "mail.test"); err != nil || !got.Equal(third) {
		t.Fatalf("with the certificate file missing: %v", err)
	}
}

func TestFingerprintMatchesOpenSSLForm(t *testing.T) {
	leaf := &x509.Certificate{Raw: []byte("x")}
	// sha256("x") = 2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881
	want := "2D:71:16:42:B7:26:B0:44:01:62:7C:A9:FB:AC:32:F5:C8:53:0F:B1:90:3C:C4:DB:02:25:87:17:92:1A:48:81"
	if got := fingerprint(leaf); got != want {
		t.Fatalf("fingerprint = %s, want %s", got, want)
	}
}

func BenchmarkGetCertificate(b *testing.B) {
	dir := b.TempDir()
	cf, kf := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	writePair(b, cf, kf, time.Now().Add(time.Hour), "bench.test")
	c, err := Load(cf, kf, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.GetCertificate(nil); err != nil {
			b.Fatal(err)
		}
	}
}

// TestServerConfigMinLegacy: ServerConfigMin(TLS 1.0) serves a client
// that speaks only TLS 1.0 with an ECDHE CBC-SHA suite, and, with an RSA
// certificate, one that offers only RSA key exchange; ServerConfig refuses
// TLS 1.0 and 1.1.
func TestServerConfigMinLegacy(t *testing.T) {
	dir := t.TempDir()
	ec, err := SelfSigned(dir, "mail.example.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	rsaCert, rsaKey := filepath.Join(dir, "rsa.pem"), filepath.Join(dir, "rsa.key")
	writeRSAPair(t, rsaCert, rsaKey, "mail.example.test")
	rc, err := Load(rsaCert, rsaKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cert    *Certificate
		min     uint16
		version uint16
		suites  []uint16
		ok      bool
	}{
		{"TLS 1.0 ECDHE-ECDSA", ec, tls.VersionTLS10, tls.VersionTLS10, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}, true},
		{"TLS 1.1 ECDHE-ECDSA", ec, tls.VersionTLS11, tls.VersionTLS11, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}, true},
		{"TLS 1.0 RSA key exchange", rc, tls.VersionTLS10, tls.VersionTLS10, []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA}, true},
		{"TLS 1.0 against min 1.1", ec, tls.VersionTLS11, tls.VersionTLS10, nil, false},
		{"TLS 1.0 against the default", ec, tls.VersionTLS12, tls.VersionTLS10, nil, false},
		{"TLS 1.1 against the default", rc, tls.VersionTLS12, tls.VersionTLS11, nil, false},
		{"3DES stays off", rc, tls.VersionTLS10, tls.VersionTLS10, []uint16{tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			errc := make(chan error, 1)
			go func() { errc <- tls.Server(a, tt.cert.ServerConfigMin(tt.min)).Handshake(); a.Close() }()
			cl := tls.Client(b, &tls.Config{InsecureSkipVerify: true, MinVersion: tt.version, MaxVersion: tt.version, CipherSuites: tt.suites})
			err := cl.Handshake()
			<-errc
			if (err == nil) != tt.ok {
				t.Fatalf("handshake: %v, want success %v", err, tt.ok)
			}
			if tt.ok && cl.ConnectionState().Version != tt.version {
				t.Fatalf("version %x, want %x", cl.ConnectionState().Version, tt.version)
			}
		})
	}
}

// writeRSAPair writes a self-signed RSA certificate and key for name.
func writeRSAPair(t *testing.T, certFile, keyFile, name string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	writeSelfSigned(t, certFile, keyFile, tmpl, key)
}
