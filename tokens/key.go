package tokens

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/xoauthd/xoauthd/config"
)

const (
	// KeySize is the size of the store key: AES-256 (config.KeyLen, whose
	// DecodeKey reads it).
	KeySize = config.KeyLen
	// maxKeyFile bounds how much of a key file is read.
	maxKeyFile = 4 << 10
)

// LoadKey returns the store key from store.key (32 bytes written as base64 or
// hex). When store.key is a ${file:PATH} reference (s.KeyFile) and that file
// does not exist, LoadKey creates it with a new random key, mode 0600, and
// reports created so the caller can say so.
func LoadKey(s config.Store) (key []byte, created bool, err error) {
	if s.Key != "" {
		key, err := config.DecodeKey(s.Key.Reveal())
		if err != nil {
			return nil, false, fmt.Errorf("store.key%s: %w", keySource(s), err)
		}
		return key, false, nil
	}
	if s.KeyFile == "" {
		return nil, false, errors.New("store.key is not set (hint: key: ${file:/var/lib/xoauthd/store.key} creates a key on first run)")
	}
	text, err := readBounded(s.KeyFile, maxKeyFile)
	if errors.Is(err, fs.ErrNotExist) {
		if s.IsRedis() {
			return nil, false, fmt.Errorf("store key file %s is missing (hint: with store.backend redis every replica needs the same key, so xoauthd does not make one: "+
				"create it once with: openssl rand -hex 32 > %s, and give the same file to every replica)", s.KeyFile, s.KeyFile)
		}
		if err := storeWithoutKey(s); err != nil {
			return nil, false, err
		}
		key, cerr := createKeyFile(s.KeyFile)
		if !errors.Is(cerr, fs.ErrExist) {
			return key, cerr == nil, cerr
		}
		// Another process created it first: use that one.
		text, err = readBounded(s.KeyFile, maxKeyFile)
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading store key: %w", err)
	}
	key, err = config.DecodeKey(string(text))
	if err != nil {
		return nil, false, fmt.Errorf("store key file %s: %w", s.KeyFile, err)
	}
	return key, false, nil
}

// storeWithoutKey returns an error when the key file is missing but the
// token store it encrypted exists: a new key could not decrypt it, and
// creating one would turn a missing file into a confusing "wrong key" and
// hide the real fix.
func storeWithoutKey(s config.Store) error {
	if s.Path == "" {
		return nil
	}
	fi, err := os.Stat(s.Path)
	if err != nil || fi.Size() == 0 {
		return nil
	}
	return fmt.Errorf("store key file %s is missing but the token store %s exists (hint: restore the key file from your backup: "+
		"a new key cannot decrypt the stored tokens; or, to start over, move the token store away and run xoauthd login for each identity)",
		s.KeyFile, s.Path)
}

func keySource(s config.Store) string {
	if s.KeyFile != "" {
		return " (file " + s.KeyFile + ")"
	}
	return ""
}

// createKeyFile writes a new random key to path (base64, mode 0600) without
// ever replacing an existing file: the key is written to a temporary file
// and hard-linked into place, so a concurrent creator wins or loses whole.
func createKeyFile(path string) ([]byte, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("creating store key: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating store key directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".new-*")
	if err != nil {
		return nil, fmt.Errorf("creating store key: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = io.WriteString(tmp, base64.StdEncoding.EncodeToString(key)+"\n")
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("writing store key %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		return nil, fmt.Errorf("writing store key %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return nil, fmt.Errorf("writing store key %s: %w", path, err)
	}
	return key, nil
}

// readBounded reads at most limit bytes of path and fails when it is larger.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}
