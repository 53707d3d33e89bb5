package deploy

import (
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// composeFile is the part of a Compose file the tests look at.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
	Secrets  map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       any               `yaml:"build"`
	Command     []string          `yaml:"command"`
	User        string            `yaml:"user"`
	ReadOnly    bool              `yaml:"read_only"`
	CapDrop     []string          `yaml:"cap_drop"`
	SecurityOpt []string          `yaml:"security_opt"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Secrets     []string          `yaml:"secrets"`
	NetworkMode string            `yaml:"network_mode"`
	StopGrace   string            `yaml:"stop_grace_period"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

// composeSecretsDir is where Compose mounts secrets in a container.
const composeSecretsDir = "/run/secrets"

func readCompose(t *testing.T) composeFile {
	t.Helper()
	docs := yamlDocs(t, "docker-compose.yaml")
	if len(docs) != 1 {
		t.Fatalf("docker-compose.yaml has %d documents, want 1", len(docs))
	}
	var f composeFile
	if err := docs[0].Decode(&f); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestComposeXoauthd(t *testing.T) {
	f := readCompose(t)
	x, ok := f.Services["xoauthd"]
	if !ok {
		t.Fatal("no xoauthd service")
	}
	if x.Image == "" && x.Build == nil {
		t.Error("xoauthd has neither image nor build")
	}
	if u := x.User; u == "" || u == "root" || u == "0" || strings.HasPrefix(u, "0:") {
		t.Errorf("user %q: run as the image's non-root user", u)
	}
	if !x.ReadOnly || !slices.Contains(x.CapDrop, "ALL") || !slices.Contains(x.SecurityOpt, "no-new-privileges:true") {
		t.Errorf("want read_only, cap_drop ALL and no-new-privileges; got %v %v %v", x.ReadOnly, x.CapDrop, x.SecurityOpt)
	}
	c := readCLI(t)
	argv := append([]string{binary}, x.Command...)
	c.check(t, "command", argv)
	drain := defaultDrain
	if v, ok := flagValue(argv, "drain"); ok {
		var err error
		if drain, err = time.ParseDuration(v); err != nil {
			t.Errorf("--drain %q: %v", v, err)
		}
	}
	if grace, err := time.ParseDuration(x.StopGrace); err != nil || grace < drain+stopMargin {
		t.Errorf("stop_grace_period %q must exceed the drain %v by %v (docker stop kills after 10 s by default)", x.StopGrace, drain, stopMargin)
	}
	if x.Healthcheck == nil || len(x.Healthcheck.Test) < 3 || x.Healthcheck.Test[0] != "CMD" {
		t.Fatalf("healthcheck %+v: want [CMD, %s, health]", x.Healthcheck, binary)
	}
	c.check(t, "healthcheck", x.Healthcheck.Test[1:])

	cfgPath := imageConfig
	if v, ok := x.Environment["XOAUTHD_CONFIG"]; ok {
		cfgPath = v
	}
	mounts := map[string]string{} // target: source, with options
	for _, v := range x.Volumes {
		src, target, _ := strings.Cut(v, ":")
		target, opts, _ := strings.Cut(target, ":")
		mounts[target] = src + " " + opts
	}
	cfgMount, ok := mounts[path.Dir(cfgPath)]
	if !ok {
		t.Fatalf("nothing is mounted at %s (volumes %q)", path.Dir(cfgPath), x.Volumes)
	}
	src, opts, _ := strings.Cut(cfgMount, " ")
	if opts != "ro" {
		t.Errorf("the configuration directory is mounted %q, want ro", opts)
	}
	if st, err := os.Stat(src); err != nil || !st.IsDir() {
		t.Fatalf("the configuration mount %s must be a directory in deploy/ (edits by rename reach hot reload): %v", src, err)
	}
	state, ok := mounts[stateDir]
	if name, _, _ := strings.Cut(state, " "); !ok || f.Volumes == nil || !hasKey(f.Volumes, name) {
		t.Errorf("%s: want a named volume declared under volumes:, got %q", stateDir, state)
	}

	text := string(readFile(t, filepath.Join(src, path.Base(cfgPath))))
	for _, m := range secretRef.FindAllStringSubmatch(text, -1) {
		name := strings.TrimPrefix(m[1], composeSecretsDir+"/")
		if !slices.Contains(x.Secrets, name) {
			t.Errorf("the configuration reads ${file:%s}, but the xoauthd service does not get secret %q", m[1], name)
		} else if s, ok := f.Secrets[name]; !ok || s.File == "" {
			t.Errorf("secret %q is not declared with a file under secrets:", name)
		}
	}
	if !strings.HasPrefix(rawStoreKey(t, text), "${file:"+composeSecretsDir+"/") {
		t.Errorf("store.key %q: want a Compose secret", rawStoreKey(t, text))
	}
	cfg := validateWithSecrets(t, src, text, composeSecretsDir)
	if cfg.Admin.Listen == "" {
		t.Error("admin.listen is not set: the health check has nothing to ask")
	}
	if !strings.HasPrefix(cfg.Store.Path, stateDir+"/") {
		t.Errorf("store.path %s is not on the state volume %s", cfg.Store.Path, stateDir)
	}
	for _, srv := range cfg.Servers {
		if !isLoopback(srv.Listen) {
			t.Errorf("server %s listens on %s: the application shares the network namespace, keep 127.0.0.1", srv.Protocol, srv.Listen)
		}
	}
}

func TestComposeApplication(t *testing.T) {
	f := readCompose(t)
	apps := 0
	for name, s := range f.Services {
		if name == "xoauthd" {
			continue
		}
		apps++
		if s.NetworkMode != "service:xoauthd" {
			t.Errorf("service %s: network_mode %q; it reaches xoauthd on 127.0.0.1 only with service:xoauthd", name, s.NetworkMode)
		}
	}
	if apps == 0 {
		t.Error("no application service next to xoauthd")
	}
}

// hasKey reports whether m has key k.
func hasKey(m map[string]any, k string) bool {
	_, ok := m[k]
	return ok
}
