package localtls

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// Bounds and timings.
const (
	// maxPEMBytes bounds a certificate or key file: a chain of a few
	// certificates is a few KiB.
	maxPEMBytes = 1 << 20
	// recheckInterval is how often at most a handshake looks at the files
	// again, so that a flood of handshakes does not stat them each time.
	recheckInterval = 5 * time.Second
)

// Certificate is the certificate of one listener. GetCertificate serves it
// and picks up changed files (see the package documentation). It is safe for
// concurrent use.
type Certificate struct {
	certFile, keyFile string
	log               *slog.Logger
	recheck           time.Duration    // recheckInterval; tests shorten it
	now               func() time.Time // time.Now; tests move it

	mu      sync.Mutex
	cert    *tls.Certificate // served; never nil once Load returned
	stamp   stamp            // of the files cert was loaded from
	checked time.Time        // when the files were last looked at
	bad     stamp            // files that did not load; not tried or logged again
}

// stamp identifies one version of the two files.
type stamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

// Load reads a PEM certificate chain (leaf first) and its private key. log
// receives the certificate's names, expiry and fingerprint, and later
// reloads; nil discards.
func Load(certFile, keyFile string, log *slog.Logger) (*Certificate, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Certificate{certFile: certFile, keyFile: keyFile, log: log, recheck: recheckInterval, now: time.Now}
	st, err := c.stat()
	if err != nil {
		return nil, err
	}
	cert, err := loadPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	c.cert, c.stamp, c.checked = cert, st, c.now()
	c.logLoaded("local TLS certificate loaded", cert)
	return c, nil
}

// GetCertificate implements tls.Config.GetCertificate: the current
// certificate, reloaded first when its files changed.
func (c *Certificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.current(), nil
}

// ServerConfig returns a TLS configuration serving c: TLS 1.2 or later, no
// client certificates.
func (c *Certificate) ServerConfig() *tls.Config {
	return c.ServerConfigMin(tls.VersionTLS12)
}

// ServerConfigMin is ServerConfig accepting TLS versions from min (at least
// TLS 1.0). Below TLS 1.2 it enables, besides Go's default suites (whose
// ECDHE CBC-SHA ones TLS 1.0 clients can use with any certificate), the
// RSA key exchange suites with AES-CBC-SHA that Go leaves out by default and
// old Windows and Mono TLS stacks may offer alone (they need an RSA
// certificate). An explicit MinVersion is all crypto/tls needs for TLS 1.0
// and 1.1 on a server: GODEBUG=tls10server only changes the default. 3DES
// and RC4 stay off.
func (c *Certificate) ServerConfigMin(min uint16) *tls.Config {
	cfg := &tls.Config{MinVersion: max(min, tls.VersionTLS10), GetCertificate: c.GetCertificate}
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.CipherSuites = LegacyCipherSuites()
	}
	return cfg
}

// LegacyCipherSuites is the TLS 1.0–1.2 suite list of a listener that
// accepts TLS 1.0 or 1.1: Go's secure suites plus
// TLS_RSA_WITH_AES_{128,256}_CBC_SHA.
func LegacyCipherSuites() []uint16 {
	var ids []uint16
	for _, cs := range tls.CipherSuites() {
		ids = append(ids, cs.ID)
	}
	return append(ids, tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_256_CBC_SHA)
}

// Leaf returns the certificate being served.
func (c *Certificate) Leaf() *x509.Certificate { return c.current().Leaf }

// Fingerprint returns the SHA-256 fingerprint of the certificate being
// served, as upper-case hex pairs joined by colons (the form browsers and
// mail clients show).
func (c *Certificate) Fingerprint() string { return fingerprint(c.Leaf()) }

// current returns the certificate to serve, reloading it when the files
// changed since it was loaded and the last look is recheck ago.
func (c *Certificate) current() *tls.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if now.Sub(c.checked) < c.recheck {
		return c.cert
	}
	c.checked = now
	st, err := c.stat()
	if err != nil || st == c.stamp || st == c.bad {
		// A file missing for a moment (being replaced) keeps the old one.
		return c.cert
	}
	cert, err := loadPair(c.certFile, c.keyFile)
	if err != nil {
		c.bad = st
		c.log.Warn("local TLS certificate files changed but do not load; still serving the previous certificate",
			"cert", c.certFile, "key", c.keyFile, "err", err)
		return c.cert
	}
	c.cert, c.stamp = cert, st
	c.logLoaded("local TLS certificate reloaded: the files changed", cert)
	return c.cert
}

// stat returns the stamp of the two files.
func (c *Certificate) stat() (stamp, error) {
	ci, err := os.Stat(c.certFile)
	if err != nil {
		return stamp{}, fmt.Errorf("reading the TLS certificate: %w (hint: check tls.cert)", err)
	}
	ki, err := os.Stat(c.keyFile)
	if err != nil {
		return stamp{}, fmt.Errorf("reading the TLS key: %w (hint: check tls.key)", err)
	}
	return stamp{certMod: ci.ModTime(), keyMod: ki.ModTime(), certSize: ci.Size(), keySize: ki.Size()}, nil
}

// logLoaded logs what a client will be shown, and warns about a
// certificate outside its validity.
func (c *Certificate) logLoaded(msg string, cert *tls.Certificate) {
	leaf := cert.Leaf
	c.log.Info(msg, "cert", c.certFile, "names", names(leaf), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339),
		"sha256", fingerprint(leaf))
	switch now := c.now(); {
	case now.After(leaf.NotAfter):
		c.log.Warn("the local TLS certificate has expired: mail clients will refuse it; renew it (it is reloaded when the files change)",
			"cert", c.certFile, "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		c.log.Warn("the local TLS certificate is not valid yet: check this machine's clock",
			"cert", c.certFile, "not_before", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
}

// loadPair reads and parses a certificate chain and its key.
func loadPair(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := readBounded(certFile)
	if err != nil {
		return nil, fmt.Errorf("reading the TLS certificate: %w", err)
	}
	keyPEM, err := readBounded(keyFile)
	if err != nil {
		return nil, fmt.Errorf("reading the TLS key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading the TLS certificate %s with key %s: %w (hint: both must be PEM, the certificate first in its file and the key matching it)",
			certFile, keyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parsing the TLS certificate %s: %w", certFile, err)
		}
	}
	return &cert, nil
}

// errTooLarge means a PEM file is larger than maxPEMBytes.
var errTooLarge = errors.New("file too large for a PEM certificate or key")

// readBounded reads a whole file of at most maxPEMBytes.
func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPEMBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > maxPEMBytes {
		return nil, fmt.Errorf("%s: %w (more than %d bytes)", path, errTooLarge, maxPEMBytes)
	}
	return b, nil
}

// names lists the host names and addresses a certificate is valid for.
func names(leaf *x509.Certificate) string {
	n := append([]string(nil), leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		n = append(n, ip.String())
	}
	if len(n) == 0 {
		return leaf.Subject.CommonName
	}
	return strings.Join(n, ",")
}

// fingerprint formats the SHA-256 of a certificate as AA:BB:...
func fingerprint(leaf *x509.Certificate) string {
	sum := sha256.Sum256(leaf.Raw)
	var b strings.Builder
	for i, x := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", x)
	}
	return b.String()
}
