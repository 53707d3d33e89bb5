package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzSecretValue is the value of every environment variable and secret
// file the reference fuzz target can name: no error may contain it.
const fuzzSecretValue = "s3cr3t-VALUE-never-in-errors"

// FuzzSecretRef resolves arbitrary secret field values: a value that is
// not exactly one reference comes back unchanged, an error never contains
// the secret, and the store key's file reference is recorded, not read.
func FuzzSecretRef(f *testing.F) {
	for _, s := range []string{"${env:M365_SECRET}", "${file:secret.txt}", "${file:/etc/hostname}", "${env:}", "${file:}",
		"${vault:x}", "plain value", "${env:A}${env:B}", "${ENV:A}", "$env:A}", "${env:UNSET}", "${file:missing}", ""} {
		f.Add(s, false)
		f.Add(s, true)
	}
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "secret.txt"), []byte(fuzzSecretValue+"\n"), 0o600); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string, storeKey bool) {
		// Only references inside the fuzz directory are read.
		if strings.Contains(raw, "..") || strings.Contains(raw, "${file:/") {
			return
		}
		r := &resolver{dir: dir, lookupEnv: func(name string) (string, bool) {
			return fuzzSecretValue, name != "UNSET"
		}}
		path := "providers.m365.client_secret"
		if storeKey {
			path = storeKeyPath
		}
		v, err := r.resolve(raw, path)
		kind, _, isRef := parseRef(raw)
		switch {
		case !isRef:
			if err != nil || v != raw {
				t.Fatalf("resolve(%q) = %q, %v; want it unchanged", raw, v, err)
			}
		case err != nil:
			if strings.Contains(err.Error(), fuzzSecretValue) {
				t.Fatalf("the error holds the secret: %v", err)
			}
		case kind == "file" && storeKey:
			if v != "" || r.keyFile == "" {
				t.Fatalf("store key reference %q: value %q, file %q", raw, v, r.keyFile)
			}
		}
	})
}

// FuzzDecodeKey checks that a store key decodes to exactly KeyLen bytes or
// fails without echoing its input.
func FuzzDecodeKey(f *testing.F) {
	for _, s := range []string{"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY",
		"not-a-key-but-long-enough-to-be-noticed", " \n", ""} {
		f.Add(s)
	}
	_, fixed := DecodeKey("")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := DecodeKey(s)
		if err != nil {
			if k != nil {
				t.Fatal("a key with an error")
			}
			// An input that is part of the fixed message proves nothing.
			trimmed := strings.TrimSpace(s)
			if len(trimmed) >= 8 && strings.Contains(err.Error(), trimmed) && !strings.Contains(fixed.Error(), trimmed) {
				t.Fatalf("the error echoes the key: %v", err)
			}
			return
		}
		if len(k) != KeyLen {
			t.Fatalf("decoded %d bytes", len(k))
		}
	})
}
