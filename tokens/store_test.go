package tokens

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/config"
)

// put replaces identity's record.
func put(t testing.TB, s *Store, rec record) {
	t.Helper()
	if err := s.modify(rec.Identity, func(r *record, _ bool) (bool, error) { *r = rec; return true, nil }); err != nil {
		t.Fatal(err)
	}
}

func sampleRecord(identity string) record {
	return record{
		Identity: identity, Provider: "m365", Flow: config.FlowAuthCode, User: identity,
		Scopes:       []string{"https://outlook.office.com/IMAP.AccessAsUser.All", "offline_access"},
		RefreshToken: "0.ARefreshTokenSecretValue-" + identity,
		AccessToken:  "eyJAccessTokenSecretValue." + identity,
		Expiry:       time.Now().Add(time.Hour).Round(0),
		LoggedIn:     time.Now().Round(0),
	}
}

func TestStoreRoundTrip(t *testing.T) {
	s, key := newStore(t)
	want := sampleRecord(alice)
	put(t, s, want)
	s2, err := OpenStore(s.Path(), key)
	if err != nil {
		t.Fatal(err)
	}
	got := mustGet(t, s2, strings.ToUpper(alice)) // identities compare case-insensitively
	if got.RefreshToken != want.RefreshToken || got.AccessToken != want.AccessToken || !got.Expiry.Equal(want.Expiry) {
		t.Fatalf("round trip: got %+v, want %+v", got, want)
	}
	if runtime.GOOS != "windows" {
		fi, _ := os.Stat(s.Path())
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("store mode %v, want 0600", fi.Mode().Perm())
		}
	}
	if _, err := os.Stat(s.Path() + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left behind: %v", err)
	}
}

// TestStoreHoldsNoPlaintext greps the file's bytes for the tokens and the
// identity, in plain and in base64.
func TestStoreHoldsNoPlaintext(t *testing.T) {
	s, _ := newStore(t)
	rec := sampleRecord(alice)
	put(t, s, rec)
	raw, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{rec.RefreshToken, rec.AccessToken, "RefreshTokenSecretValue", "AccessTokenSecretValue", alice} {
		for _, form := range []string{secret, base64.StdEncoding.EncodeToString([]byte(secret)), base64.RawURLEncoding.EncodeToString([]byte(secret))} {
			if bytes.Contains(raw, []byte(form)) {
				t.Errorf("store file contains %q", form)
			}
		}
	}
	if !bytes.Contains(raw, []byte(storeFormat)) || !bytes.Contains(raw, []byte(storeCipher)) {
		t.Errorf("store file does not say what it is:\n%s", raw)
	}
}

// TestStoreBadFileUntouched: a wrong key or a damaged file gives an error
// naming the file, and neither opening nor writing changes the file.
func TestStoreBadFileUntouched(t *testing.T) {
	good, key := newStore(t)
	put(t, good, sampleRecord(alice))
	orig, _ := os.ReadFile(good.Path())

	flip := func(b []byte) []byte {
		c := bytes.Clone(b)
		i := bytes.Index(c, []byte(`"data": "`)) + len(`"data": "`) + 5
		if c[i] == 'A' {
			c[i] = 'B'
		} else {
			c[i] = 'A'
		}
		return c
	}
	tests := []struct {
		name    string
		content []byte
		key     []byte
		want    error
	}{
		{"wrong key", orig, newKey(t), ErrWrongKey},
		{"flipped ciphertext", flip(orig), key, ErrCorrupt},
		{"truncated", orig[:len(orig)/2], key, ErrCorrupt},
		{"not json", []byte("hello"), key, ErrCorrupt},
		{"empty", []byte{}, key, ErrCorrupt},
		{"other json", []byte(`{"identities":{}}`), key, ErrCorrupt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tokens.json")
			if err := os.WriteFile(path, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			before, _ := os.Stat(path)
			_, err := OpenStore(path, tc.key)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("OpenStore error %v, want %v naming %s", err, tc.want, path)
			}
			// A store opened before the damage must not write over it.
			os.Remove(path)
			s, err := OpenStore(path, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(path, tc.content, 0o600)
			before, _ = os.Stat(path)
			if err := s.modify(bob, func(r *record, _ bool) (bool, error) { *r = sampleRecord(bob); return true, nil }); !errors.Is(err, tc.want) {
				t.Fatalf("write over a bad file: %v, want %v", err, tc.want)
			}
			if _, _, err := s.get(alice); !errors.Is(err, tc.want) {
				t.Fatalf("read of a bad file: %v, want %v", err, tc.want)
			}
			after, _ := os.Stat(path)
			now, _ := os.ReadFile(path)
			if !bytes.Equal(now, tc.content) || !after.ModTime().Equal(before.ModTime()) || !os.SameFile(before, after) {
				t.Fatal("the bad file was changed")
			}
		})
	}
}

func TestStoreUnsupportedVersion(t *testing.T) {
	s, key := newStore(t)
	put(t, s, sampleRecord(alice))
	raw, _ := os.ReadFile(s.Path())
	raw = bytes.Replace(raw, []byte(`"version": 1`), []byte(`"version": 9`), 1)
	os.WriteFile(s.Path(), raw, 0o600)
	_, err := OpenStore(s.Path(), key)
	if err == nil || !strings.Contains(err.Error(), "version 9") {
		t.Fatalf("OpenStore error %v, want one naming version 9", err)
	}
}

// TestStoreSeesOtherWriters: a store notices a file replaced by another
// process (here another Store on the same path) without being reopened.
func TestStoreSeesOtherWriters(t *testing.T) {
	a, key := newStore(t)
	b, err := OpenStore(a.Path(), key)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := b.get(alice); ok {
		t.Fatal("empty store has alice")
	}
	put(t, a, sampleRecord(alice))
	if r := mustGet(t, b, alice); r.RefreshToken != sampleRecord(alice).RefreshToken {
		t.Fatal("b does not see a's write")
	}
	if ok, err := a.Delete(alice); !ok || err != nil {
		t.Fatalf("Delete = %v, %v", ok, err)
	}
	if _, ok, _ := b.get(alice); ok {
		t.Fatal("b still sees the deleted record")
	}
	if ok, err := a.Delete(alice); ok || err != nil {
		t.Fatalf("second Delete = %v, %v", ok, err)
	}
}

// TestStoreMergesConcurrentWriters: two stores on one file (as serve and
// login in two processes) update under the lock, re-reading first, so no
// update is lost, on the same identity or on different ones.
func TestStoreMergesConcurrentWriters(t *testing.T) {
	a, key := newStore(t)
	b, err := OpenStore(a.Path(), key)
	if err != nil {
		t.Fatal(err)
	}
	const perStore = 20
	var wg sync.WaitGroup
	for i, s := range []*Store{a, b} {
		wg.Go(func() {
			for j := range perStore {
				own := "user" + strconv.Itoa(i) + "-" + strconv.Itoa(j) + "@example.com"
				if err := s.modify(own, func(r *record, _ bool) (bool, error) { *r = sampleRecord(own); return true, nil }); err != nil {
					t.Error(err)
				}
				err := s.modify("shared@example.com", func(r *record, _ bool) (bool, error) {
					n, _ := strconv.Atoi(r.User)
					r.Identity, r.User = "shared@example.com", strconv.Itoa(n+1)
					return true, nil
				})
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	all, err := a.all()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2*perStore+1 {
		t.Errorf("store holds %d identities, want %d", len(all), 2*perStore+1)
	}
	if r := mustGet(t, b, "shared@example.com"); r.User != strconv.Itoa(2*perStore) {
		t.Errorf("shared counter = %s, want %d (lost updates)", r.User, 2*perStore)
	}
}

func TestStoreStatus(t *testing.T) {
	s, _ := newStore(t)
	now := time.Now()
	valid := sampleRecord("valid@example.com")
	expired := sampleRecord("expired@example.com")
	expired.Expiry = now.Add(-time.Minute)
	dead := sampleRecord("dead@example.com")
	dead.LastError = &lastError{Class: classNeedsLogin.String(), Code: "AADSTS700082", Message: "refresh token expired (AADSTS700082): run ...", At: now}
	for _, r := range []record{valid, expired, dead} {
		put(t, s, r)
	}
	list, err := s.List(now)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"valid@example.com": StateValid, "expired@example.com": StateExpired, "dead@example.com": StateNeedsLogin}
	if len(list) != len(want) {
		t.Fatalf("List returned %d entries", len(list))
	}
	for _, st := range list {
		if st.State != want[st.Identity] {
			t.Errorf("%s: state %q, want %q", st.Identity, st.State, want[st.Identity])
		}
	}
	if st, _, _ := s.Status("dead@example.com", now); !strings.Contains(st.LastError, "AADSTS700082") {
		t.Errorf("last error %q", st.LastError)
	}
	if st, ok, err := s.Status("nobody@example.com", now); ok || err != nil || st.State != StateNoToken {
		t.Errorf("Status of unknown = %+v, %v, %v", st, ok, err)
	}
}

func TestOpenStoreArguments(t *testing.T) {
	if _, err := OpenStore("", newKey(t)); err == nil {
		t.Error("empty path accepted")
	}
	if _, err := OpenStore(filepath.Join(t.TempDir(), "t.json"), make([]byte, 16)); err == nil {
		t.Error("16-byte key accepted")
	}
}

// FuzzStoreDecode feeds arbitrary files to the decoder.
func FuzzStoreDecode(f *testing.F) {
	s, err := OpenStore(filepath.Join(f.TempDir(), "t.json"), bytes.Repeat([]byte{7}, KeySize))
	if err != nil {
		f.Fatal(err)
	}
	good, _ := s.encode(map[string]record{"a@b": sampleRecord("a@b")})
	f.Add(good)
	f.Add([]byte(`{"format":"xoauthd-token-store","version":1,"cipher":"AES-256-GCM","key_id":"x","nonce":"","data":""}`))
	f.Add([]byte(`{}`))
	f.Add([]byte{0xff})
	f.Fuzz(func(t *testing.T, raw []byte) {
		data, err := s.decode(raw)
		if err == nil && data == nil {
			t.Fatal("decode returned nil data without an error")
		}
	})
}
