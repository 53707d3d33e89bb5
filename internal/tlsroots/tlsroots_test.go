package tlsroots

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWithFileErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	big := filepath.Join(dir, "big.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(big, make([]byte, maxCAFile+1), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ file, want string }{
		{filepath.Join(dir, "missing.pem"), "reading ca_file"},
		{notPEM, "no PEM certificate found"},
		{big, "is larger than"},
	} {
		if _, err := WithFile(tc.file); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", filepath.Base(tc.file), err, tc.want)
		}
	}
	if pool, err := WithFile(""); err != nil || pool == nil {
		t.Fatalf("system roots: %v", err)
	}
}
