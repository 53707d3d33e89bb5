package tlsroots

import (
	"crypto/x509"
	"fmt"
	"io"
	"os"
)

// maxCAFile bounds how much of a CA file is read.
const maxCAFile = 1 << 20

// WithFile returns the system roots plus the certificates of caFile (PEM);
// with caFile "" the system roots alone. Errors name the file and say what
// it must hold.
func WithFile(caFile string) (*x509.CertPool, error) {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if caFile == "" {
		return roots, nil
	}
	pem, err := readBounded(caFile)
	if err != nil {
		return nil, fmt.Errorf("reading ca_file: %w", err)
	}
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("reading ca_file %s: no PEM certificate found (hint: the file must hold one or more -----BEGIN CERTIFICATE----- blocks)", caFile)
	}
	return roots, nil
}

// readBounded reads a whole file of at most maxCAFile bytes.
func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCAFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxCAFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxCAFile)
	}
	return b, nil
}
