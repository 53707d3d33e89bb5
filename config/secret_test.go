package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const marker = "Sup3rS3cretMarker"

func TestSecretNeverPrints(t *testing.T) {
	s := Secret(marker)
	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10s", "%T:%v"} {
		outs = append(outs, fmt.Sprintf(verb, s))
	}
	outs = append(outs, fmt.Sprint(s), fmt.Sprintf("%v", &s), s.String(), s.GoString(), fmt.Sprintf("%v", struct{ K Secret }{s}))
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "secret", s, "in", struct{ K Secret }{s})
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "secret", s)
	outs = append(outs, buf.String())
	j, err := json.Marshal(struct{ K Secret }{s})
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.Marshal(struct{ K Secret }{s})
	if err != nil {
		t.Fatal(err)
	}
	outs = append(outs, string(j), string(y))
	for _, out := range outs {
		if strings.Contains(out, marker) {
			t.Errorf("secret printed: %q", out)
		}
	}
	if s.Reveal() != marker {
		t.Errorf("Reveal = %q", s.Reveal())
	}
	if e, _ := json.Marshal(Secret("")); string(e) != `""` {
		t.Errorf("empty secret marshals as %s", e)
	}
	if !Secret("").IsZero() || s.IsZero() {
		t.Error("IsZero wrong")
	}
}

// TestSecretNeverInError: secrets that are wrong in every way the loader
// checks still never appear in problems, nor in a printed Config.
func TestSecretNeverInError(t *testing.T) {
	t.Setenv("XOAUTHD_TEST_SECRET", marker+"-env")
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "key"), marker+"-key-file\n")
	writeFile(t, filepath.Join(dir, "big"), marker+strings.Repeat("x", maxSecretFile))
	src := `store:
  key: ${file:key}
providers:
  a:
    type: microsoft
    client_id: id
    client_secret: ${env:XOAUTHD_TEST_SECRET}
    flow: client_credentials
  b:
    type: google
    client_id: id
    client_secret: ${file:big}
  c:
    type: custom
    client_secret: [` + marker + `-in-a-list]
servers:
  - {protocol: imap, listen: "127.0.0.1:1143", upstream: "x:1"}
accounts:
  - login: a
    password_hash: ` + marker + `-hash
    identity: a@contoso.com
    provider: a
  - login: b
    password_hash: $argon2id$v=19$m=65536,t=2,p=1$` + marker + `$` + marker + `
    identity: b@contoso.com
    provider: a
  - login: c
    password_hash: {` + marker + `: 1}
    identity: c@contoso.com
    provider: a
  - login: d
    password_hash: "${` + marker + `}"
    identity: d@contoso.com
    provider: a
`
	_, err := Parse([]byte(src), filepath.Join(dir, "xoauthd.yaml"))
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("Parse = %v; want problems", err)
	}
	wantPaths := []string{"store.key", "providers.a.tenant", "providers.b.client_secret", "providers.c.client_secret",
		"accounts[0].password_hash", "accounts[1].password_hash", "accounts[2].password_hash", "accounts[3].password_hash"}
	for _, path := range wantPaths {
		found := false
		for _, p := range ps {
			found = found || p.Path == path
		}
		if !found {
			t.Errorf("no problem at %s in:\n%v", path, ps)
		}
	}
	if strings.Contains(err.Error(), marker) {
		t.Errorf("a secret appears in the problems:\n%v", err)
	}

	// A valid config holding secrets prints none of them.
	cfg, err := Parse([]byte(strings.Replace(validYAML, "    type: microsoft", "    type: microsoft\n    client_secret: ${env:XOAUTHD_TEST_SECRET}", 1)), filepath.Join(dir, "xoauthd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "provider", cfg.Providers["m365"], "store", cfg.Store)
	j, _ := json.Marshal(cfg)
	y, _ := yaml.Marshal(cfg)
	for _, out := range []string{fmt.Sprintf("%+v %#v", *cfg.Providers["m365"], cfg.Store), buf.String(), string(j), string(y)} {
		if strings.Contains(out, marker) {
			t.Errorf("a secret appears in a printed config: %s", out)
		}
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"30s", 30 * time.Second, false},
		{"31m", 31 * time.Minute, false},
		{"1h30m", 90 * time.Minute, false},
		{"0", 0, false},
		{"30", 0, true},
		{"soon", 0, true},
		{"[1m]", 0, true},
		{"{a: 1}", 0, true},
	}
	for _, tt := range tests {
		var v struct {
			D Duration `yaml:"d"`
		}
		err := yaml.Unmarshal([]byte("d: "+tt.in), &v)
		if (err != nil) != tt.err || time.Duration(v.D) != tt.want {
			t.Errorf("%q: %v, %v; want %v, error %v", tt.in, time.Duration(v.D), err, tt.want, tt.err)
		}
	}
	out, err := yaml.Marshal(struct{ D Duration }{Duration(31 * time.Minute)})
	if err != nil || strings.TrimSpace(string(out)) != "d: 31m0s" {
		t.Errorf("Marshal = %q, %v", out, err)
	}
}
