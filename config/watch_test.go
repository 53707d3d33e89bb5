package config

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testDebounce keeps the watch tests quick.
const testDebounce = 20 * time.Millisecond

// watchConfig is a valid configuration whose only account has login.
func watchConfig(login string) string {
	return fmt.Sprintf(`providers:
  m365:
    type: microsoft
    client_id: 3f2a5d1c-8b7e-4c2a-9e61-0d4b7a9c5e21
servers:
  - protocol: imap
    listen: 127.0.0.1:1143
accounts:
  - login: %s
    password_hash: $argon2id$v=19$m=24576,t=2,p=1$CN+OY1B3VPKH6MoQedCaXg$wBVH52bUhlkgkOKHTHXGXk9L3zCoWdWBBag7EGay/t8
    identity: billing@contoso.com
`, login)
}

// badConfig has an unknown key on line 5.
const badConfig = `providers:
  m365:
    type: microsoft
    client_id: 3f2a5d1c-8b7e-4c2a-9e61-0d4b7a9c5e21
    colour: blue
`

type loadResult struct {
	cfg *Config
	err error
}

// startWatch watches path until the test ends and returns the results.
func startWatch(t *testing.T, path string) <-chan loadResult {
	t.Helper()
	ch := make(chan loadResult, 64)
	w, err := Watch(context.Background(), path, testDebounce, func(cfg *Config, err error) {
		ch <- loadResult{cfg, err}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return ch
}

// waitFor reads results until one satisfies ok, failing after a deadline.
func waitFor(t *testing.T, ch <-chan loadResult, what string, ok func(loadResult) bool) loadResult {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case r := <-ch:
			if ok(r) {
				return r
			}
		case <-timeout:
			t.Fatalf("no reload with %s", what)
		}
	}
}

// waitLogin waits for a reload whose account is login.
func waitLogin(t *testing.T, ch <-chan loadResult, login string) *Config {
	t.Helper()
	return waitFor(t, ch, "account "+login, func(r loadResult) bool {
		return r.err == nil && len(r.cfg.Accounts) == 1 && r.cfg.Accounts[0].Login == login
	}).cfg
}

func writeWatched(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestWatchWriteInPlace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "xoauthd.yaml")
	writeWatched(t, path, watchConfig("v1"))
	ch := startWatch(t, path)
	writeWatched(t, path, watchConfig("v2"))
	cfg := waitLogin(t, ch, "v2")
	if cfg.Path != path {
		t.Errorf("Config.Path = %q, want %q", cfg.Path, path)
	}
}

func TestWatchRenameOver(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "xoauthd.yaml")
	writeWatched(t, path, watchConfig("v1"))
	ch := startWatch(t, path)
	for _, login := range []string{"v2", "v3"} {
		// An editor: a backup, a temporary file, then a rename over the original.
		writeWatched(t, filepath.Join(dir, "xoauthd.yaml~"), watchConfig("backup"))
		tmp := filepath.Join(dir, ".xoauthd.yaml.swp")
		writeWatched(t, tmp, watchConfig(login))
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		waitLogin(t, ch, login)
	}
}

// configMap lays dir out like a Kubernetes ConfigMap volume:
// xoauthd.yaml → ..data/xoauthd.yaml, ..data → ..<version>.
type configMap struct {
	t       *testing.T
	dir     string
	current string // the timestamped directory ..data names
}

func newConfigMap(t *testing.T, content string) *configMap {
	m := &configMap{t: t, dir: t.TempDir()}
	m.current = m.writeVersion("..2025_01_01_00_00_00.1", content)
	if err := os.Symlink(m.current, filepath.Join(m.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "xoauthd.yaml"), filepath.Join(m.dir, "xoauthd.yaml")); err != nil {
		t.Fatal(err)
	}
	return m
}

func (m *configMap) path() string { return filepath.Join(m.dir, "xoauthd.yaml") }

func (m *configMap) writeVersion(name, content string) string {
	if err := os.Mkdir(filepath.Join(m.dir, name), 0o755); err != nil {
		m.t.Fatal(err)
	}
	writeWatched(m.t, filepath.Join(m.dir, name, "xoauthd.yaml"), content)
	return name
}

// update swaps ..data the way the kubelet does: new directory, a temporary
// link renamed over ..data, old directory removed (unless keepOld).
func (m *configMap) update(version, content string, keepOld bool) {
	next := m.writeVersion(version, content)
	tmp := filepath.Join(m.dir, "..data_tmp")
	if err := os.Symlink(next, tmp); err != nil {
		m.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(m.dir, "..data")); err != nil {
		m.t.Fatal(err)
	}
	if !keepOld {
		if err := os.RemoveAll(filepath.Join(m.dir, m.current)); err != nil {
			m.t.Fatal(err)
		}
	}
	m.current = next
}

func TestWatchConfigMapSwap(t *testing.T) {
	m := newConfigMap(t, watchConfig("v1"))
	if cfg, err := Load(m.path()); err != nil || cfg.Accounts[0].Login != "v1" {
		t.Fatalf("Load through the links = %v", err)
	}
	ch := startWatch(t, m.path())
	m.update("..2025_01_01_00_01_00.2", watchConfig("v2"), false)
	waitLogin(t, ch, "v2")
	// The watch followed the swap: a second one is seen too, and the swap
	// of ..data alone (the old directory still there) is enough.
	m.update("..2025_01_01_00_02_00.3", watchConfig("v3"), true)
	waitLogin(t, ch, "v3")
}

func TestWatchInvalidThenFixed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "xoauthd.yaml")
	writeWatched(t, path, watchConfig("v1"))
	ch := startWatch(t, path)
	writeWatched(t, path, badConfig)
	r := waitFor(t, ch, "problems", func(r loadResult) bool { return r.err != nil })
	var problems Problems
	if !errors.As(r.err, &problems) || r.cfg != nil {
		t.Fatalf("invalid file gave %v, %v; want Problems and no Config", r.cfg, r.err)
	}
	found := false
	for _, p := range problems {
		found = found || p.Line == 5
	}
	if !found {
		t.Fatalf("problems %q name no line 5", problems.Error())
	}
	writeWatched(t, path, watchConfig("fixed"))
	waitLogin(t, ch, "fixed")
}

func TestWatchRemovedThenRecreated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "xoauthd.yaml")
	writeWatched(t, path, watchConfig("v1"))
	ch := startWatch(t, path)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ch, "a missing file error", func(r loadResult) bool { return errors.Is(r.err, fs.ErrNotExist) })
	writeWatched(t, path, watchConfig("back"))
	waitLogin(t, ch, "back")
}

func TestWatchStops(t *testing.T) {
	path := filepath.Join(t.TempDir(), "xoauthd.yaml")
	writeWatched(t, path, watchConfig("v1"))
	ctx, cancel := context.WithCancel(context.Background())
	w, err := Watch(ctx, path, testDebounce, func(*Config, error) {})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-w.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the watcher did not stop when its context ended")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestWatchMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope", "xoauthd.yaml")
	if _, err := Watch(context.Background(), path, testDebounce, func(*Config, error) {}); err == nil {
		t.Fatal("watching a file in a missing directory succeeded")
	}
}

func TestWatchSetRelevance(t *testing.T) {
	plainDir := t.TempDir()
	plain := filepath.Join(plainDir, "xoauthd.yaml")
	writeWatched(t, plain, watchConfig("v1"))

	m := newConfigMap(t, watchConfig("v1"))

	linkDir, targetDir := t.TempDir(), t.TempDir()
	target := filepath.Join(targetDir, "real.yaml")
	writeWatched(t, target, watchConfig("v1"))
	linked := filepath.Join(linkDir, "xoauthd.yaml")
	if err := os.Symlink(target, linked); err != nil {
		t.Fatal(err)
	}
	real := func(p string) string {
		r, err := filepath.EvalSymlinks(filepath.Dir(p))
		if err != nil {
			t.Fatal(err)
		}
		return filepath.Join(r, filepath.Base(p))
	}

	tests := []struct {
		name   string
		path   string
		event  string
		wanted bool
	}{
		{"the file", plain, plain, true},
		{"a backup beside it", plain, plain + "~", false},
		{"a swap file beside it", plain, filepath.Join(plainDir, ".xoauthd.yaml.swp"), false},
		{"another file", plain, filepath.Join(plainDir, "tokens.json"), false},
		{"configmap: the link", m.path(), m.path(), true},
		{"configmap: ..data", m.path(), filepath.Join(m.dir, "..data"), true},
		{"configmap: ..data_tmp", m.path(), filepath.Join(m.dir, "..data_tmp"), false},
		{"configmap: the file read", m.path(), filepath.Join(m.dir, m.current, "xoauthd.yaml"), true},
		{"configmap: another key", m.path(), filepath.Join(m.dir, m.current, "other.yaml"), false},
		{"symlink: the link", linked, linked, true},
		{"symlink: its target", linked, target, true},
		{"symlink: beside the target", linked, filepath.Join(targetDir, "other.yaml"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dirs, names := watchSet(tt.path)
			if got := names[real(tt.event)]; got != tt.wanted {
				t.Errorf("event on %s relevant = %v, want %v (names %v)", tt.event, got, tt.wanted, names)
			}
			if !dirs[filepath.Dir(real(tt.event))] {
				t.Errorf("directory of %s not watched (dirs %v)", tt.event, dirs)
			}
		})
	}
}
