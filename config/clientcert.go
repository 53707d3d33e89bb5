package config

import (
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"
)

// ClientCertificate is an app registration's certificate credential: the
// application proves itself with an assertion signed by the key (Microsoft
// "certificate credentials"), instead of a client_secret. Both files are
// PEM; the key is RSA and readable by its owner only.
type ClientCertificate struct {
	Cert string `yaml:"cert"` // the certificate uploaded to the app registration (leaf first)
	Key  string `yaml:"key"`  // its private key (PKCS#8 or PKCS#1); mode 0600
}

// Bounds of the client certificate.
const (
	// maxCredentialPEM bounds a certificate or key file.
	maxCredentialPEM = 1 << 20
	// minRSABits is the smallest key Microsoft accepts for a certificate
	// credential.
	minRSABits = 2048
	// CertificateWarnBefore is how long before its expiry a client
	// certificate is warned about.
	CertificateWarnBefore = 30 * 24 * time.Hour
)

// LoadClientCertificate reads the certificate and key of c and checks them:
// PEM, the key RSA of at least 2048 bits and matching the certificate, the
// key file not readable by group or others (where file modes mean that).
// The leaf is parsed (tls.Certificate.Leaf). It reads the files every time,
// so a renewed certificate is used as soon as its files are replaced.
func LoadClientCertificate(c *ClientCertificate) (*tls.Certificate, error) {
	if err := checkKeyMode(c.Key); err != nil {
		return nil, err
	}
	certPEM, err := readPEMFile(c.Cert)
	if err != nil {
		return nil, fmt.Errorf("reading the client certificate: %w", err)
	}
	keyPEM, err := readPEMFile(c.Key)
	if err != nil {
		return nil, fmt.Errorf("reading the client certificate's key: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading the client certificate %s with key %s: %w (hint: both PEM, the certificate first in its file, and the key the one it was made with)",
			c.Cert, c.Key, err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parsing the client certificate %s: %w", c.Cert, err)
		}
	}
	key, ok := pair.PrivateKey.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("the client certificate %s has a %T key: Microsoft needs RSA; make one with "+
			"openssl req -x509 -newkey rsa:2048 -nodes -keyout app.key -out app.pem -days 365", c.Cert, pair.PrivateKey)
	}
	if key.N.BitLen() < minRSABits {
		return nil, fmt.Errorf("the client certificate %s has a %d-bit RSA key: use at least %d bits", c.Cert, key.N.BitLen(), minRSABits)
	}
	return &pair, nil
}

// checkKeyMode refuses a private key file that group or others may read.
// Windows has no such mode bits: there the file's ACL is the admin's care.
func checkKeyMode(name string) error {
	st, err := os.Stat(name)
	if err != nil {
		return fmt.Errorf("reading the client certificate's key: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("the client certificate's key %s is not a regular file", name)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("the client certificate's key %s may be read by others (mode %04o): run chmod 600 %s", name, st.Mode().Perm(), name)
	}
	return nil
}

// readPEMFile reads a whole file of at most maxCredentialPEM bytes.
func readPEMFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCredentialPEM+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxCredentialPEM {
		return nil, fmt.Errorf("%s is larger than %d bytes; is it the right file?", name, maxCredentialPEM)
	}
	return b, nil
}

// clientCertificates checks, when the configuration is parsed, that each
// provider's client certificate loads (the files exist, the key is private
// and matches). It does I/O, like reading the store key.
func (d *decoder) clientCertificates(cfg *Config) {
	for name, p := range cfg.Providers {
		if p == nil || p.ClientCertificate == nil || p.ClientCertificate.Cert == "" || p.ClientCertificate.Key == "" {
			continue
		}
		path := "providers." + name + ".client_certificate"
		if _, err := LoadClientCertificate(p.ClientCertificate); err != nil {
			d.addf(path, d.lines.line(path), "%v", err)
		}
	}
}

// clientCertificate checks the client_certificate and client_secret keys of
// a provider: at most one of them, both files named, and one of them for
// the client_credentials flow.
func (k *checker) clientCertificate(at string, p *Provider) {
	cc := p.ClientCertificate
	switch {
	case cc != nil && p.ClientSecret != "":
		k.addf(at+".client_certificate", "set either client_secret or client_certificate, not both")
	case cc == nil && p.ClientSecret == "" && p.Flow == FlowClientCredentials:
		k.addf(at+".client_secret", "missing; the client_credentials flow needs one, e.g. client_secret: ${env:CLIENT_SECRET}, "+
			"or a client_certificate: {cert: FILE, key: FILE} instead")
	}
	if cc == nil {
		return
	}
	if p.Type != TypeMicrosoft && p.Type != "" {
		k.addf(at+".client_certificate", "certificate credentials are for microsoft providers; use client_secret")
	}
	if cc.Cert == "" {
		k.addf(at+".client_certificate.cert", "missing; the PEM certificate uploaded to the app registration")
	}
	if cc.Key == "" {
		k.addf(at+".client_certificate.key", "missing; the PEM private key of the certificate (mode 0600)")
	}
}

// certificateWarnings warns about client certificates that expire within
// CertificateWarnBefore or have expired (Microsoft then refuses the
// assertion).
func (k *checker) certificateWarnings(now time.Time) {
	for _, name := range k.names {
		p := k.c.Providers[name]
		if p == nil || p.ClientCertificate == nil {
			continue
		}
		pair, err := LoadClientCertificate(p.ClientCertificate)
		if err != nil {
			continue // a problem of Parse
		}
		path := "providers." + name + ".client_certificate"
		switch leaf := pair.Leaf; {
		case now.After(leaf.NotAfter):
			k.addf(path, "the certificate %s expired on %s: Microsoft refuses its assertions; make a new one, upload it "+
				"to the app registration and replace the files", p.ClientCertificate.Cert, leaf.NotAfter.UTC().Format(time.DateOnly))
		case now.Add(CertificateWarnBefore).After(leaf.NotAfter):
			k.addf(path, "the certificate %s expires on %s: make a new one, upload it to the app registration, then replace "+
				"the files (xoauthd reads them at each token request)", p.ClientCertificate.Cert, leaf.NotAfter.UTC().Format(time.DateOnly))
		}
	}
}
