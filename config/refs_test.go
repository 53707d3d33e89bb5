package config

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// secretYAML puts ref as client_secret (line 7) of validYAML.
func secretYAML(t *testing.T, ref string) string {
	return variant(t, "    type: microsoft", "    type: microsoft\n    client_secret: "+ref)
}

func TestSecretRefs(t *testing.T) {
	t.Setenv("XOAUTHD_TEST_SECRET", "from-env")
	t.Setenv("XOAUTHD_TEST_EMPTY", "")
	abs := filepath.Join(t.TempDir(), "abs-secret")
	writeFile(t, abs, "from-abs-file\r\n")
	tests := []struct {
		name, ref string
		files     map[string]string // relative to the config's directory
		want      string            // the resolved secret, when no problem
		problem   string            // expected problem at providers.m365.client_secret (line 6)
	}{
		{name: "literal", ref: "plain-secret", want: "plain-secret"},
		{name: "literal with a reference inside", ref: "pre${env:XOAUTHD_TEST_SECRET}", want: "pre${env:XOAUTHD_TEST_SECRET}"},
		{name: "env", ref: "${env:XOAUTHD_TEST_SECRET}", want: "from-env"},
		{name: "env unset", ref: "${env:XOAUTHD_TEST_UNSET}", problem: "environment variable XOAUTHD_TEST_UNSET is not set"},
		{name: "env empty", ref: "${env:XOAUTHD_TEST_EMPTY}", problem: "environment variable XOAUTHD_TEST_EMPTY is empty"},
		{name: "env without name", ref: "${env:}", problem: "needs a variable name"},
		{name: "file relative", ref: "${file:secrets/cs.txt}", files: map[string]string{"secrets/cs.txt": "from-file\n"}, want: "from-file"},
		{name: "file absolute", ref: "${file:" + abs + "}", want: "from-abs-file"},
		{name: "file missing", ref: "${file:secrets/none.txt}", problem: "secrets/none.txt named by ${file:...} does not exist"},
		{name: "file is a directory", ref: "${file:secrets}", files: map[string]string{"secrets/x": "x"}, problem: "is not a regular file"},
		{name: "file empty", ref: "${file:empty.txt}", files: map[string]string{"empty.txt": "\n"}, problem: "is empty"},
		{name: "file too large", ref: "${file:big.txt}", files: map[string]string{"big.txt": strings.Repeat("x", maxSecretFile+1)}, problem: "larger than"},
		{name: "file without path", ref: "${file:}", problem: "needs a path"},
		{name: "unknown kind", ref: "${vault:kv/xoauthd}", problem: "unknown reference ${vault:...}; use ${env:NAME} or ${file:PATH}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tt.files {
				writeFile(t, filepath.Join(dir, name), content)
			}
			cfg, err := Parse([]byte(secretYAML(t, tt.ref)), filepath.Join(dir, "xoauthd.yaml"))
			if tt.problem == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if got := cfg.Providers["m365"].ClientSecret.Reveal(); got != tt.want {
					t.Errorf("client_secret = %q, want %q", got, tt.want)
				}
				return
			}
			ps, _ := err.(Problems)
			if len(ps) != 1 || ps[0].Path != "providers.m365.client_secret" || ps[0].Line != 6 || !strings.Contains(ps[0].Msg, tt.problem) {
				t.Errorf("Parse = %v; want providers.m365.client_secret (line 6): ...%s...", err, tt.problem)
			}
		})
	}
}

func TestStoreKey(t *testing.T) {
	key := strings.Repeat("ab", KeyLen)
	tests := []struct {
		name     string
		store    string            // the store: section
		files    map[string]string // relative to the config's directory
		keyFile  string            // want Store.KeyFile, relative to the directory
		key      string            // want Store.Key
		problem  string            // expected problem at store.key
		probLine int
	}{
		{name: "file missing is fine", store: "store:\n  key: ${file:keys/store.key}\n", keyFile: "keys/store.key"},
		{name: "file present", store: "store:\n  key: ${file:keys/store.key}\n", files: map[string]string{"keys/store.key": key + "\n"}, keyFile: "keys/store.key", key: key},
		{name: "file with a bad key", store: "store:\n  key: ${file:store.key}\n", files: map[string]string{"store.key": "short\n"}, problem: "must be 32 random bytes", probLine: 2},
		{name: "file is a directory", store: "store:\n  key: ${file:keys}\n", files: map[string]string{"keys/x": "x"}, problem: "is not a regular file", probLine: 2},
		{name: "default beside the configuration", store: "store:\n  path: state/tokens.json\n", keyFile: "store.key"},
		{name: "default read when present", store: "store:\n  path: state/tokens.json\n", files: map[string]string{"store.key": key}, keyFile: "store.key", key: key},
		// An installation that relied on the old default keeps working (and
		// is warned, see TestWarningsStoreKey).
		{name: "old default beside the store", store: "store:\n  path: state/tokens.json\n", files: map[string]string{"state/store.key": key}, keyFile: "state/store.key", key: key},
		{name: "new default wins over the old", store: "store:\n  path: state/tokens.json\n", files: map[string]string{"store.key": key, "state/store.key": "x"}, keyFile: "store.key", key: key},
		{name: "no store section", store: "", keyFile: "store.key"},
		{name: "env", store: "store:\n  key: ${env:XOAUTHD_TEST_KEY}\n", key: key},
		{name: "literal base64", store: "store:\n  key: q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n", key: "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s="},
	}
	t.Setenv("XOAUTHD_TEST_KEY", key)
	rest := validYAML[strings.Index(validYAML, "providers:"):]
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err, dir := parseWithFiles(t, tt.store+rest, tt.files)
			if tt.problem != "" {
				ps, _ := err.(Problems)
				if len(ps) != 1 || ps[0].Path != "store.key" || ps[0].Line != tt.probLine || !strings.Contains(ps[0].Msg, tt.problem) {
					t.Errorf("Parse = %v; want store.key (line %d): ...%s...", err, tt.probLine, tt.problem)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			wantFile := ""
			if tt.keyFile != "" {
				wantFile = filepath.Join(dir, tt.keyFile)
			}
			if cfg.Store.KeyFile != wantFile || cfg.Store.Key.Reveal() != tt.key {
				t.Errorf("store = KeyFile %q, key %q; want %q, %q", cfg.Store.KeyFile, cfg.Store.Key.Reveal(), wantFile, tt.key)
			}
		})
	}
}

func TestDecodeKey(t *testing.T) {
	raw := make([]byte, KeyLen)
	for i := range raw {
		raw[i] = byte(i * 7)
	}
	good := []string{
		hex.EncodeToString(raw),
		strings.ToUpper(hex.EncodeToString(raw)),
		"AAcOFRwjKjE4P0ZNVFtiaXB3foWMk5qhqK+2vcTL0tk=",
		"AAcOFRwjKjE4P0ZNVFtiaXB3foWMk5qhqK+2vcTL0tk",
		"AAcOFRwjKjE4P0ZNVFtiaXB3foWMk5qhqK-2vcTL0tk",
		"  AAcOFRwjKjE4P0ZNVFtiaXB3foWMk5qhqK+2vcTL0tk=\n",
	}
	for _, s := range good {
		b, err := DecodeKey(s)
		if err != nil || hex.EncodeToString(b) != hex.EncodeToString(raw) {
			t.Errorf("DecodeKey(%q) = %x, %v", s, b, err)
		}
	}
	bad := []string{"", "short", hex.EncodeToString(raw[:31]), hex.EncodeToString(raw) + "00", "AAcOFRwjKjE4P0ZNVFtiaXB3foWMk5qhqK+2vcTL0tkA", "zz" + hex.EncodeToString(raw)[2:]}
	for _, s := range bad {
		if _, err := DecodeKey(s); err == nil {
			t.Errorf("DecodeKey(%q) succeeded", s)
		} else if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("DecodeKey error repeats the key: %v", err)
		}
	}
}

func TestRelativePaths(t *testing.T) {
	cfg, err := Load("testdata/custom.yaml")
	if err != nil {
		t.Fatal(err)
	}
	base := "testdata"
	checks := map[string][2]string{
		"store.path":         {cfg.Store.Path, filepath.Join(base, "state/tokens.json")},
		"store.KeyFile":      {cfg.Store.KeyFile, filepath.Join(base, "state/store.key")},
		"servers[0].ca_file": {cfg.Servers[0].CAFile, filepath.Join(base, "ca.pem")},
		"servers[0].tls.key": {cfg.Servers[0].TLS.Key, filepath.Join(base, "tls/key.pem")},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", name, c[0], c[1])
		}
	}
}

func TestDefaultPath(t *testing.T) {
	t.Setenv(EnvConfig, "/etc/xoauthd/from-env.yaml")
	if got := DefaultPath(); got != "/etc/xoauthd/from-env.yaml" {
		t.Errorf("with $%s: %q", EnvConfig, got)
	}
	t.Setenv(EnvConfig, "")
	home := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, "cfg"))
	t.Setenv("HOME", home)
	t.Setenv("AppData", filepath.Join(home, "cfg"))
	cwd := t.TempDir()
	t.Chdir(cwd)
	want := filepath.Join(home, "cfg", "xoauthd", "xoauthd.yaml")
	if got := DefaultPath(); got != want && !strings.HasSuffix(got, filepath.Join("xoauthd", "xoauthd.yaml")) {
		t.Errorf("without ./xoauthd.yaml: %q, want %q", got, want)
	}
	writeFile(t, filepath.Join(cwd, "xoauthd.yaml"), "log: {}\n")
	if got := DefaultPath(); got != "xoauthd.yaml" {
		t.Errorf("with ./xoauthd.yaml: %q", got)
	}
}

// parseWithFiles parses src as xoauthd.yaml in a fresh directory that also
// holds files (relative name to content), and returns that directory.
func parseWithFiles(t *testing.T, src string, files map[string]string) (*Config, error, string) {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		writeFile(t, filepath.Join(dir, name), content)
	}
	cfg, err := Parse([]byte(src), filepath.Join(dir, "xoauthd.yaml"))
	return cfg, err, dir
}
