package tokens

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	storeFormat  = "xoauthd-token-store"
	storeVersion = 1
	storeCipher  = "AES-256-GCM"
	// maxStoreFile bounds how much of the store file is read.
	maxStoreFile = 16 << 20
	// storeLockTimeout is how long a writer waits for another process that
	// holds the store lock before giving up.
	storeLockTimeout = 30 * time.Second
	// maxLockPoll is the longest pause between two attempts to take the lock.
	maxLockPoll = 10 * time.Millisecond
)

// envelope is what the store file holds: the whole token set, encrypted
// with AES-256-GCM under the store key. Only the envelope is readable.
type envelope struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	Cipher  string `json:"cipher"`
	// KeyID identifies the key (a truncated HMAC of a fixed label), so a
	// wrong key can be told apart from a damaged file.
	KeyID string `json:"key_id"`
	Nonce []byte `json:"nonce"`
	Data  []byte `json:"data"`
}

// storeData is the plaintext inside the envelope.
type storeData struct {
	Identities map[string]record `json:"identities"`
}

// record is everything kept for one identity. Records are values: the
// store hands out copies.
type record struct {
	Identity     string     `json:"identity"`
	Provider     string     `json:"provider"`
	Flow         string     `json:"flow"`
	User         string     `json:"user,omitempty"` // who signed in, from the id_token
	Scopes       []string   `json:"scopes,omitempty"`
	RefreshToken string     `json:"refresh_token"`
	AccessToken  string     `json:"access_token,omitempty"`
	Expiry       time.Time  `json:"expiry,omitzero"` // of AccessToken
	LoggedIn     time.Time  `json:"logged_in"`
	LastRefresh  time.Time  `json:"last_refresh,omitzero"`
	LastError    *lastError `json:"last_error,omitempty"`
}

// lastError is the last failed refresh, in words; cleared by a success.
type lastError struct {
	Class   string    `json:"class"` // needs login | temporary | configuration
	Code    string    `json:"code,omitempty"`
	Meaning string    `json:"meaning,omitempty"` // without the fix
	Message string    `json:"message"`           // the whole error text
	At      time.Time `json:"at"`
}

func (r record) clone() record {
	r.Scopes = slices.Clone(r.Scopes)
	if r.LastError != nil {
		e := *r.LastError
		r.LastError = &e
	}
	return r
}

// storeKey is the map key of an identity: addresses compare case-insensitively.
func storeKey(identity string) string { return strings.ToLower(strings.TrimSpace(identity)) }

// Store is the encrypted token file. Reads see the newest file written by
// any process (the file is re-read when it changed on disk); writes take an
// advisory lock, re-read the file under it, change only the identity they
// are about and replace the file atomically. Safe for concurrent use.
type Store struct {
	path  string
	aead  cipher.AEAD
	keyID string

	// writeMu serialises this process's writers; it is held while waiting
	// for the lock file, so readers do not take it.
	writeMu sync.Mutex
	mu      sync.Mutex // guards data and seen; never held while waiting for the lock file
	data    map[string]record
	seen    os.FileInfo // the file data was read from; nil when there was none
}

// OpenStore opens the token store at path with a 32-byte key. A missing file
// is an empty store (it is created by the first write). A file that does not
// decrypt with key is an error naming the file; the file is not touched.
func OpenStore(path string, key []byte) (*Store, error) {
	if path == "" {
		return nil, errors.New("store.path is not set (hint: path: /var/lib/xoauthd/tokens.json)")
	}
	aead, keyID, err := storeCipherOf(key)
	if err != nil {
		return nil, err
	}
	s := &Store{path: path, aead: aead, keyID: keyID}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reloadLocked(); err != nil {
		return nil, err
	}
	return s, nil
}

// storeCipherOf returns the AES-256-GCM cipher of a store key and the key's
// id (a truncated HMAC of a fixed label), which tells a wrong key apart
// from damaged data without revealing the key.
func storeCipherOf(key []byte) (cipher.AEAD, string, error) {
	if len(key) != KeySize {
		return nil, "", fmt.Errorf("store key has %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, "", fmt.Errorf("store key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, "", fmt.Errorf("store key: %w", err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(storeFormat + " key id"))
	return aead, hex.EncodeToString(mac.Sum(nil)[:8]), nil
}

// Path returns the store file's path.
func (s *Store) Path() string { return s.path }

// get returns a copy of identity's record, re-reading the file first when
// another process changed it.
func (s *Store) get(identity string) (record, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reloadLocked(); err != nil {
		return record{}, false, err
	}
	r, ok := s.data[storeKey(identity)]
	return r.clone(), ok, nil
}

// all returns copies of all records, sorted by identity.
func (s *Store) all() ([]record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reloadLocked(); err != nil {
		return nil, err
	}
	keys := slices.Sorted(maps.Keys(s.data))
	out := make([]record, 0, len(keys))
	for _, k := range keys {
		out = append(out, s.data[k].clone())
	}
	return out, nil
}

// Delete removes identity from the store and reports whether it was there.
func (s *Store) Delete(identity string) (bool, error) {
	var found bool
	err := s.update(func(data map[string]record) (bool, error) {
		k := storeKey(identity)
		_, found = data[k]
		delete(data, k)
		return found, nil
	})
	return found, err
}

// modify applies fn to identity's current record (a copy; exists tells
// whether there is one) under the store lock, and writes the result unless
// fn returns keep=false or an error. fn sees the newest state on disk.
func (s *Store) modify(identity string, fn func(r *record, exists bool) (keep bool, err error)) error {
	return s.update(func(data map[string]record) (bool, error) {
		k := storeKey(identity)
		r, ok := data[k]
		r = r.clone()
		keep, err := fn(&r, ok)
		if err != nil || !keep {
			return false, err
		}
		data[k] = r
		return true, nil
	})
}

// update runs fn on the freshly read contents of the file while holding the
// lock file, and writes the file when fn reports a change.
func (s *Store) update(fn func(data map[string]record) (changed bool, err error)) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return writeFailed(fmt.Errorf("creating token store directory: %w", err))
	}
	release, err := lockStoreFile(s.path + ".lock")
	if err != nil {
		return writeFailed(err)
	}
	defer release()
	data, fi, err := s.readFile()
	if err != nil {
		return err
	}
	changed, err := fn(data)
	if err != nil {
		return err
	}
	if changed {
		if fi, err = s.writeFile(data); err != nil {
			return writeFailed(err)
		}
	}
	s.mu.Lock()
	s.data, s.seen = data, fi
	s.mu.Unlock()
	return nil
}

// writeFailed adds the fix to an error writing the store when the file
// system refused the write. The file on disk is unchanged then: it is only
// ever replaced whole.
func writeFailed(err error) error {
	var hint string
	switch {
	case errors.Is(err, syscall.EROFS):
		hint = "the token store's file system is read-only: make it writable for xoauthd"
	case errors.Is(err, syscall.ENOSPC):
		hint = "the token store's file system is full: free some space"
	case errors.Is(err, fs.ErrPermission):
		hint = "xoauthd may not write the token store's directory: give the user it runs as write access"
	default:
		return err
	}
	return fmt.Errorf("%w (hint: %s; the stored tokens are unchanged)", err, hint)
}

// reloadLocked re-reads the file when it is not the one data came from.
func (s *Store) reloadLocked() error {
	fi, err := os.Stat(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if s.data == nil || s.seen != nil {
			s.data, s.seen = map[string]record{}, nil
		}
		return nil
	case err != nil:
		return fmt.Errorf("token store %s: %w", s.path, err)
	}
	if s.seen != nil && os.SameFile(fi, s.seen) && fi.ModTime().Equal(s.seen.ModTime()) && fi.Size() == s.seen.Size() {
		return nil
	}
	data, fi, err := s.readFile()
	if err != nil {
		return err
	}
	s.data, s.seen = data, fi
	return nil
}

// readFile reads and decrypts the store file. A missing file is empty.
func (s *Store) readFile() (map[string]record, os.FileInfo, error) {
	f, err := os.Open(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]record{}, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("token store %s: %w", s.path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("token store %s: %w", s.path, err)
	}
	if fi.Size() > maxStoreFile {
		return nil, nil, fmt.Errorf("token store %s is larger than %d bytes; it is not a token store (hint: check store.path)", s.path, maxStoreFile)
	}
	raw := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, raw); err != nil {
		return nil, nil, fmt.Errorf("token store %s: %w", s.path, err)
	}
	data, err := s.decode(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("token store %s: %w", s.path, err)
	}
	return data, fi, nil
}

// Errors of decode, for errors.Is.
var (
	// ErrWrongKey means the store was written with another key.
	ErrWrongKey = errors.New("encrypted with a different key (hint: store.key must be the key the store was created with; to start over, move the file away and log in again)")
	// ErrCorrupt means the store file is damaged or not a token store.
	ErrCorrupt = errors.New("damaged or not an xoauthd token store (hint: restore it from a backup, or move it away and log in again)")
)

// decode decrypts one store file.
func (s *Store) decode(raw []byte) (map[string]record, error) {
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if env.Format != storeFormat || env.Cipher != storeCipher {
		return nil, ErrCorrupt
	}
	if env.Version != storeVersion {
		return nil, fmt.Errorf("store format version %d is not supported by this xoauthd (it knows version %d); use a newer xoauthd", env.Version, storeVersion)
	}
	if env.KeyID != s.keyID {
		return nil, ErrWrongKey
	}
	if len(env.Nonce) != s.aead.NonceSize() {
		return nil, ErrCorrupt
	}
	plain, err := s.aead.Open(nil, env.Nonce, env.Data, additionalData())
	if err != nil {
		return nil, fmt.Errorf("%w: authentication of the encrypted data failed", ErrCorrupt)
	}
	defer clear(plain)
	var sd storeData
	if err := json.Unmarshal(plain, &sd); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if sd.Identities == nil {
		sd.Identities = map[string]record{}
	}
	return sd.Identities, nil
}

// encode encrypts data into the bytes of a store file.
func (s *Store) encode(data map[string]record) ([]byte, error) {
	plain, err := json.Marshal(storeData{Identities: data})
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	env := envelope{
		Format: storeFormat, Version: storeVersion, Cipher: storeCipher, KeyID: s.keyID,
		Nonce: nonce, Data: s.aead.Seal(nil, nonce, plain, additionalData()),
	}
	return json.MarshalIndent(env, "", "  ")
}

// additionalData binds the ciphertext to the format and version.
func additionalData() []byte {
	return fmt.Appendf(nil, "%s/%d/%s", storeFormat, storeVersion, storeCipher)
}

// writeFile replaces the store file atomically: a temporary file (0600) in
// the same directory, fsync, rename over the store, fsync of the directory.
// The caller holds the lock file, so one fixed temporary name is enough and
// a leftover from a crash is simply replaced.
func (s *Store) writeFile(data map[string]record) (os.FileInfo, error) {
	b, err := s.encode(data)
	if err != nil {
		return nil, fmt.Errorf("token store %s: encoding: %w", s.path, err)
	}
	tmp := s.path + ".tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("token store %s: %w", s.path, err)
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("token store %s: %w", s.path, err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(s.path))
	}
	if err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("writing token store %s: %w", s.path, err)
	}
	fi, err := os.Stat(s.path)
	if err != nil {
		return nil, fmt.Errorf("token store %s: %w", s.path, err)
	}
	return fi, nil
}

// lockStoreFile takes the store's lock file, waiting up to storeLockTimeout
// for another process, and returns the function that releases it. The lock
// file itself is never removed: removing it would let two processes lock
// two different files.
func lockStoreFile(path string) (release func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening token store lock %s: %w", path, err)
	}
	deadline := time.Now().Add(storeLockTimeout)
	pause := time.Millisecond
	for {
		ok, err := tryLock(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("locking token store %s: %w", path, err)
		}
		if ok {
			return func() { unlock(f); f.Close() }, nil
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("token store lock %s is held by another process for more than %v (hint: is another xoauthd stuck?)", path, storeLockTimeout)
		}
		time.Sleep(pause)
		pause = min(2*pause, maxLockPoll)
	}
}
