package tokens

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xoauthd/xoauthd/config"
)

// TestLoadKeyMissingWithStore checks that a lost key file is reported as
// such when a store encrypted with it exists, and that no new key replaces
// it: the store stays readable once the key is restored.
func TestLoadKeyMissingWithStore(t *testing.T) {
	dir := t.TempDir()
	s := config.Store{Path: filepath.Join(dir, "tokens.json"), KeyFile: filepath.Join(dir, "store.key")}
	tests := []struct {
		name    string
		store   []byte // nil: no store file
		created bool
	}{
		{"no store yet", nil, true},
		{"empty store file", []byte{}, true},
		{"store exists", []byte(`{"format":"xoauthd-tokens"}`), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(s.KeyFile)
			os.Remove(s.Path)
			if tt.store != nil {
				if err := os.WriteFile(s.Path, tt.store, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			key, created, err := LoadKey(s)
			if tt.created {
				if err != nil || !created || len(key) != KeySize {
					t.Fatalf("LoadKey = %d bytes, created %v, %v; want a new key", len(key), created, err)
				}
				return
			}
			if err == nil || created {
				t.Fatalf("LoadKey = created %v, %v; want an error", created, err)
			}
			for _, want := range []string{s.KeyFile, s.Path, "missing", "restore the key file"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			if _, err := os.Stat(s.KeyFile); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a key file was created: %v", err)
			}
		})
	}
}
