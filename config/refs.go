package config

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// maxSecretFile bounds a file read through ${file:PATH}.
const maxSecretFile = 64 << 10

// storeKeyPath is the YAML path of the store key, whose ${file:} may name a
// file that does not exist yet (the token store creates it).
const storeKeyPath = "store.key"

// resolver resolves ${env:NAME} and ${file:PATH} references in secrets.
type resolver struct {
	dir       string // base directory for relative ${file:} paths
	lookupEnv func(string) (string, bool)
	// keyFile is the file named by store.key's ${file:} reference.
	keyFile string
}

// parseRef splits "${kind:arg}" when s is exactly one reference with a
// lowercase kind.
func parseRef(s string) (kind, arg string, ok bool) {
	inner, ok := strings.CutPrefix(s, "${")
	if !ok {
		return "", "", false
	}
	if inner, ok = strings.CutSuffix(inner, "}"); !ok {
		return "", "", false
	}
	kind, arg, ok = strings.Cut(inner, ":")
	if !ok || kind == "" || strings.TrimLeft(kind, "abcdefghijklmnopqrstuvwxyz") != "" {
		return "", "", false
	}
	return kind, arg, true
}

// resolve returns the value of a secret field. Errors name the reference
// and never the value. The store key's file is only recorded, not read:
// Parse reads it once defaults are known, and a missing one is created by
// the token store.
func (r *resolver) resolve(raw, path string) (string, error) {
	kind, arg, ok := parseRef(raw)
	if !ok {
		return raw, nil
	}
	switch kind {
	case "env":
		if arg == "" {
			return "", errors.New("${env:} needs a variable name, like ${env:M365_CLIENT_SECRET}")
		}
		v, ok := r.lookupEnv(arg)
		if !ok {
			return "", fmt.Errorf("environment variable %s is not set; export it before starting xoauthd", arg)
		}
		if v == "" {
			return "", fmt.Errorf("environment variable %s is empty; set it to the secret", arg)
		}
		return v, nil
	case "file":
		if arg == "" {
			return "", errors.New("${file:} needs a path, like ${file:/run/secrets/client_secret}")
		}
		file := r.path(arg)
		if path == storeKeyPath {
			r.keyFile = file
			return "", nil
		}
		v, err := readSecretFile(file)
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("file %s named by ${file:...} does not exist; create it or fix the path", file)
		}
		return v, err
	}
	return "", fmt.Errorf("unknown reference ${%s:...}; use ${env:NAME} or ${file:PATH}", kind)
}

// path resolves p against the configuration's directory.
func (r *resolver) path(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(r.dir, p)
}

// readSecretFile reads a small regular file and drops the trailing newline
// that editors and echo add. Errors never contain the content.
func readSecretFile(name string) (string, error) {
	st, err := os.Stat(name)
	if err != nil {
		return "", fmt.Errorf("reading secret: %w", err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("reading secret: %s is not a regular file", name)
	}
	f, err := os.Open(name)
	if err != nil {
		return "", fmt.Errorf("reading secret: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", fmt.Errorf("reading secret from %s: %w", name, err)
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("reading secret: %s is larger than %d bytes; is it the right file?", name, maxSecretFile)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("reading secret: %s is empty", name)
	}
	return s, nil
}

// KeyLen is the length in bytes of the token store key.
const KeyLen = 32

// DecodeKey decodes a token store key written as 64 hex digits or as base64
// (standard or URL alphabet, padded or not) of KeyLen bytes. Errors never
// contain the key.
func DecodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) == 2*KeyLen {
		if b, err := hex.DecodeString(s); err == nil {
			return b, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == KeyLen {
			return b, nil
		}
	}
	return nil, fmt.Errorf("the store key must be %d random bytes written as %d hex digits or as base64 (for example: openssl rand -base64 %d)", KeyLen, 2*KeyLen, KeyLen)
}
