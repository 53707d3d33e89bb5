package localtls

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSelfSignedMadeOnceAndReused(t *testing.T) {
	for _, host := range []string{"mail.example.test", "192.0.2.7", "::1"} {
		t.Run(host, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			logs, log := newLog()
			c, err := SelfSigned(dir, host, log)
			if err != nil {
				t.Fatal(err)
			}
			leaf := c.Leaf()
			if err := leaf.VerifyHostname(host); err != nil {
				t.Fatalf("certificate does not name %s: %v", host, err)
			}
			if life := leaf.NotAfter.Sub(leaf.NotBefore); life < 365*24*time.Hour || life > 366*24*time.Hour {
				t.Errorf("validity %v, want one year", life)
			}
			if leaf.PublicKeyAlgorithm.String() != "ECDSA" {
				t.Errorf("key algorithm %v, want ECDSA", leaf.PublicKeyAlgorithm)
			}
			// A client that trusts the certificate itself accepts it.
			if _, err := handshake(t, c.ServerConfig(), pool(leaf), host); err != nil {
				t.Fatalf("handshake trusting the self-signed certificate: %v", err)
			}
			cf, kf := SelfSignedFiles(dir, host)
			st, err := os.Stat(kf)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
			}
			if _, err := os.Stat(cf); err != nil {
				t.Fatal(err)
			}
			for _, s := range []string{"made a self-signed TLS certificate", "sha256=" + c.Fingerprint()} {
				if !strings.Contains(logs.String(), s) {
					t.Errorf("log lacks %q:\n%s", s, logs)
				}
			}

			again, err := SelfSigned(dir, host, nil)
			if err != nil {
				t.Fatal(err)
			}
			if again.Fingerprint() != c.Fingerprint() {
				t.Fatal("a second start made a new certificate instead of reusing the kept one")
			}
		})
	}
}

func TestSelfSignedRenewed(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string)
		because string
	}{
		{"expiring soon", func(t *testing.T, dir string) {
			cf, kf := SelfSignedFiles(dir, "mail.test")
			if err := makeSelfSigned(dir, cf, kf, "mail.test", time.Now().Add(-350*24*time.Hour)); err != nil {
				t.Fatal(err)
			}
		}, "the kept one expires on"},
		{"other host", func(t *testing.T, dir string) {
			cf, kf := SelfSignedFiles(dir, "mail.test")
			if err := makeSelfSigned(dir, cf, kf, "other.test", time.Now()); err != nil {
				t.Fatal(err)
			}
		}, "does not name mail.test"},
		{"corrupt", func(t *testing.T, dir string) {
			cf, kf := SelfSignedFiles(dir, "mail.test")
			for _, f := range []string{cf, kf} {
				if err := os.WriteFile(f, []byte("junk"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}, "does not load"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.prepare(t, dir)
			logs, log := newLog()
			c, err := SelfSigned(dir, "mail.test", log)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(logs.String(), tt.because) {
				t.Fatalf("log does not say %q:\n%s", tt.because, logs)
			}
			if err := c.Leaf().VerifyHostname("mail.test"); err != nil {
				t.Fatal(err)
			}
			if time.Until(c.Leaf().NotAfter) < 360*24*time.Hour {
				t.Fatalf("renewed certificate expires %v", c.Leaf().NotAfter)
			}
		})
	}
}

func TestSelfSignedFailures(t *testing.T) {
	if _, err := SelfSigned(t.TempDir(), "", nil); err == nil || !strings.Contains(err.Error(), "tls.self_signed") {
		t.Fatalf("empty host: %v", err)
	}
	// The directory is a file: nothing can be written there.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := SelfSigned(file, "mail.test", nil); err == nil {
		t.Fatal("SelfSigned in a directory that is a file succeeded")
	}
}

func TestFileSafe(t *testing.T) {
	for in, want := range map[string]string{
		"Mail.Example.test": "mail.example.test",
		"::1":               "__1",
		"../etc/passwd":     ".._etc_passwd",
		"10.0.0.1":          "10.0.0.1",
	} {
		if got := fileSafe(in); got != want {
			t.Errorf("fileSafe(%q) = %q, want %q", in, got, want)
		}
	}
}
