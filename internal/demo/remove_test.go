package demo

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// errWine is what os.RemoveAll returns under Wine 8.
var errWine = errors.New(`unlinkat C:\users\u\Temp\xoauthd-demo-1\memupstream-ca.pem: Invalid function.`)

// makeTree fills a directory like the demo's: files and a subdirectory.
func makeTree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "xoauthd-demo-1")
	for _, name := range []string{"xoauthd.yaml", "tokens.json", "store.key", "sub/deeper/file", "sub/other"} {
		path := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(name), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestRemoveTree(t *testing.T) {
	tests := []struct {
		name      string
		removeAll func(string) error
	}{
		{"removeAll works", os.RemoveAll},
		{"removeAll fails as under Wine", func(string) error { return errWine }},
		{"removeAll removes part and fails", func(dir string) error {
			_ = os.Remove(filepath.Join(dir, "tokens.json"))
			return errWine
		}},
		{"removeAll removes all but fails", func(dir string) error {
			_ = os.RemoveAll(dir)
			return errWine
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := makeTree(t)
			if err := removeTree(dir, tt.removeAll, os.Remove); err != nil {
				t.Fatalf("removeTree: %v", err)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s is still there: %v", dir, err)
			}
		})
	}
}

func TestRemoveTreeReportsWhatStays(t *testing.T) {
	dir := makeTree(t)
	stuck := filepath.Join(dir, "sub", "other")
	errBusy := errors.New("in use by another process")
	remove := func(path string) error {
		if path == stuck {
			return errBusy
		}
		return os.Remove(path)
	}
	err := removeTree(dir, func(string) error { return errWine }, remove)
	if err == nil || !errors.Is(err, errWine) || !errors.Is(err, errBusy) || !strings.Contains(err.Error(), "file by file") {
		t.Fatalf("removeTree = %v, want the first error and what the fallback could not remove", err)
	}
	if _, err := os.Stat(stuck); err != nil {
		t.Errorf("the file that could not be removed is gone: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "tokens.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the fallback stopped at the first error: tokens.json is still there (%v)", err)
	}
}
