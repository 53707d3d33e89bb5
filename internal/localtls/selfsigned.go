package localtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Self-signed certificates.
const (
	// selfSignedValidity is how long a made certificate is valid.
	selfSignedValidity = 365 * 24 * time.Hour
	// renewBefore is how long before its expiry a kept certificate is
	// replaced at start.
	renewBefore = 30 * 24 * time.Hour
	// backdate makes a new certificate valid a little before now, for
	// clients whose clock is behind.
	backdate = time.Hour
	// selfSignedPrefix starts the names of the files, in the store directory.
	selfSignedPrefix = "selfsigned-"
)

// SelfSignedFiles returns the certificate and key files SelfSigned keeps for
// host in dir.
func SelfSignedFiles(dir, host string) (certFile, keyFile string) {
	base := filepath.Join(dir, selfSignedPrefix+fileSafe(host))
	return base + ".crt", base + ".key"
}

// SelfSigned returns a self-signed certificate for host (a DNS name or an IP
// address) kept in dir: the one made on an earlier start when it is still
// valid for more than 30 days and names host, else a new one (ECDSA P-256,
// valid for one year), written to dir (the key with mode 0600). log
// receives the fingerprint; nil discards.
func SelfSigned(dir, host string, log *slog.Logger) (*Certificate, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if host == "" {
		return nil, fmt.Errorf("making a self-signed certificate: no host name given (set tls.self_signed to the name clients connect to)")
	}
	certFile, keyFile := SelfSignedFiles(dir, host)
	if why := reusable(certFile, keyFile, host, time.Now()); why != "" {
		if err := makeSelfSigned(dir, certFile, keyFile, host, time.Now()); err != nil {
			return nil, err
		}
		log.Info("made a self-signed TLS certificate: mail clients must be told to trust it (import the file, or accept it after comparing the sha256 fingerprint logged next)",
			"host", host, "cert", certFile, "because", why)
	}
	return Load(certFile, keyFile, log)
}

// reusable says why the kept certificate cannot be used, or "" when it can.
func reusable(certFile, keyFile, host string, now time.Time) string {
	cert, err := loadPair(certFile, keyFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "there was none yet"
	case err != nil:
		return "the kept one does not load: " + err.Error()
	case cert.Leaf.VerifyHostname(host) != nil:
		return "the kept one does not name " + host
	case now.Add(renewBefore).After(cert.Leaf.NotAfter):
		return "the kept one expires on " + cert.Leaf.NotAfter.UTC().Format(time.DateOnly)
	}
	return ""
}

// makeSelfSigned makes and writes a new certificate and key for host.
func makeSelfSigned(dir, certFile, keyFile, host string, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("making a key for the self-signed certificate: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return fmt.Errorf("making a serial number: %w", err)
	}
	// A self-signed server certificate is its own trust anchor: clients
	// (OpenSSL among them) accept it as one only when it may sign
	// certificates, so it is marked as a CA that can sign nothing below it.
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: host, Organization: []string{"xoauthd self-signed"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(selfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("signing the self-signed certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding the self-signed certificate's key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s for the self-signed certificate: %w", dir, err)
	}
	// The key first: a certificate without its key is never left behind
	// as the newer file.
	if err := writeAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeAtomic(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// writeAtomic writes data to path through a temporary file in the same
// directory, synced and renamed over path.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// fileSafe turns a host name or address into a file name part.
func fileSafe(host string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		}
		return '_'
	}, host)
}
