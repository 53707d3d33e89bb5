package tokens

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/xoauthd/xoauthd/config"
)

func TestLoadKeyCreatesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "store.key")
	key, created, err := LoadKey(config.Store{KeyFile: path})
	if err != nil || !created || len(key) != KeySize {
		t.Fatalf("LoadKey = %d bytes, created %v, %v", len(key), created, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	again, created, err := LoadKey(config.Store{KeyFile: path})
	if err != nil || created || !bytes.Equal(again, key) {
		t.Fatalf("second LoadKey = created %v, %v, same key %v", created, err, bytes.Equal(again, key))
	}
	// What the configuration loader hands over once the file exists.
	text, _ := os.ReadFile(path)
	viaConfig, created, err := LoadKey(config.Store{Key: config.Secret(text), KeyFile: path})
	if err != nil || created || !bytes.Equal(viaConfig, key) {
		t.Fatalf("LoadKey from store.key = created %v, %v", created, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("key directory holds %d entries, want only the key", len(entries))
	}
}

func TestLoadKeyConcurrentCreators(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.key")
	const n = 8
	keys := make([][]byte, n)
	var created sync.Map
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			k, c, err := LoadKey(config.Store{KeyFile: path})
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
			if c {
				created.Store(i, true)
			}
		})
	}
	wg.Wait()
	for i := 1; i < n; i++ {
		if !bytes.Equal(keys[i], keys[0]) {
			t.Fatalf("creator %d got a different key", i)
		}
	}
	count := 0
	created.Range(func(any, any) bool { count++; return true })
	if count != 1 {
		t.Errorf("%d callers say they created the key, want 1", count)
	}
}

func TestLoadKeyErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.key")
	os.WriteFile(bad, []byte("not a key"), 0o600)
	tests := []struct {
		name  string
		store config.Store
		want  string
	}{
		{"nothing set", config.Store{}, "store.key is not set"},
		{"bad inline key", config.Store{Key: "short"}, "store.key"},
		{"bad key file", config.Store{KeyFile: bad}, bad},
		{"key file is a directory", config.Store{KeyFile: dir}, "reading store key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := LoadKey(tc.store)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadKey error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
