package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/passhash"
)

// Facts the deployment files share with the image and the code.
const (
	binary       = "/usr/local/bin/xoauthd" // where the Dockerfile installs it
	imageConfig  = "/etc/xoauthd/xoauthd.yaml"
	stateDir     = "/var/lib/xoauthd"
	defaultDrain = 8 * time.Second // serve's default --drain (TestDefaultDrain)
	// stopMargin is what a stop grace period must leave beyond the drain:
	// serve's exitSlack (1 s) to close what is left, and a second to spare.
	stopMargin    = 2 * time.Second
	cmdDir        = "../cmd/xoauthd"
	dockerfile    = "../Dockerfile"
	exampleConfig = "../config.example.yaml"
)

// readFile returns the content of a file of the repository.
func readFile(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// yamlDocs decodes every document of a YAML file into a node each.
func yamlDocs(t *testing.T, name string) []*yaml.Node {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, name)))
	var docs []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		docs = append(docs, &n)
	}
}

// cli is what the command line offers: subcommands and flag names, read
// from the sources of cmd/xoauthd (every platform's files).
type cli struct {
	commands map[string]bool
	flags    map[string]bool
}

// flagMethods are the flag.FlagSet methods whose first argument is a name.
var flagMethods = []string{"String", "Bool", "Duration", "Int", "Int64", "Uint", "Float64",
	"StringVar", "BoolVar", "DurationVar", "IntVar", "Var", "Func"}

// readCLI collects the command table's names and every flag defined in
// cmd/xoauthd.
func readCLI(t *testing.T) cli {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(cmdDir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no sources in %s: %v", cmdDir, err)
	}
	c := cli{commands: map[string]bool{}, flags: map[string]bool{}}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.ValueSpec:
				if len(n.Names) == 1 && n.Names[0].Name == "commands" && len(n.Values) == 1 {
					if table, ok := n.Values[0].(*ast.CompositeLit); ok {
						for _, e := range table.Elts {
							if row, ok := e.(*ast.CompositeLit); ok && len(row.Elts) > 0 {
								c.commands[stringLit(row.Elts[0])] = true
							}
						}
					}
				}
			case *ast.CallExpr:
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if !ok || !slices.Contains(flagMethods, sel.Sel.Name) || len(n.Args) < 2 {
					return true
				}
				arg := n.Args[0]
				if strings.HasSuffix(sel.Sel.Name, "Var") { // StringVar(&v, name, ...), Var(value, name, ...)
					arg = n.Args[1]
				}
				if s := stringLit(arg); s != "" {
					c.flags[s] = true
				}
			}
			return true
		})
	}
	if len(c.commands) == 0 || len(c.flags) == 0 {
		t.Fatalf("found no command table or no flags in %s", cmdDir)
	}
	return c
}

// stringLit returns the value of a string literal expression, or "".
func stringLit(e ast.Expr) string {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return ""
	}
	return strings.Trim(lit.Value, "\"`")
}

// check reports a command line (argv[0] is the binary) that names a
// subcommand or flag xoauthd does not have.
func (c cli) check(t *testing.T, where string, argv []string) {
	t.Helper()
	if len(argv) < 2 || path.Base(argv[0]) != "xoauthd" {
		t.Errorf("%s: %q does not run xoauthd with a command", where, argv)
		return
	}
	if !c.commands[argv[1]] {
		t.Errorf("%s: %q: xoauthd has no command %q", where, argv, argv[1])
	}
	for _, a := range argv[2:] {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !c.flags[name] {
			t.Errorf("%s: %q: xoauthd has no flag --%s", where, argv, name)
		}
	}
}

// flagValue returns the value of --name in argv ("--name v" or "--name=v").
func flagValue(argv []string, name string) (string, bool) {
	for i, a := range argv {
		switch {
		case a == "--"+name || a == "-"+name:
			if i+1 < len(argv) {
				return argv[i+1], true
			}
		case strings.HasPrefix(a, "--"+name+"="), strings.HasPrefix(a, "-"+name+"="):
			_, v, _ := strings.Cut(a, "=")
			return v, true
		}
	}
	return "", false
}

func TestCLIReader(t *testing.T) {
	c := readCLI(t)
	for _, cmd := range []string{"serve", "health", "login", "validate"} {
		if !c.commands[cmd] {
			t.Errorf("command table without %q: %v", cmd, c.commands)
		}
	}
	for _, f := range []string{"config", "drain", "url", "ready", "timeout"} {
		if !c.flags[f] {
			t.Errorf("flags without %q: %v", f, c.flags)
		}
	}
}

// secretRef matches ${file:PATH} references.
var secretRef = regexp.MustCompile(`\$\{file:([^}]+)\}`)

// validateWithSecrets parses an embedded configuration with config.Parse
// after pointing the ${file:} references under mountDir to stand-in files
// in a temporary directory: a store key, password hashes, other text. It
// returns the parsed configuration.
func validateWithSecrets(t *testing.T, where, text, mountDir string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	hash, err := passhash.Hash("stand-in password")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range secretRef.FindAllStringSubmatch(text, -1) {
		ref := m[1]
		rel, ok := strings.CutPrefix(ref, mountDir+"/")
		if !ok {
			t.Errorf("%s: ${file:%s} is not under the secrets mount %s", where, ref, mountDir)
			continue
		}
		content := "stand-in secret"
		switch {
		case strings.HasSuffix(rel, ".key") || strings.HasSuffix(rel, "_key"):
			content = strings.Repeat("ab", 32)
		case strings.HasSuffix(rel, ".hash") || strings.HasSuffix(rel, "_hash"):
			content = hash
		}
		if err := os.WriteFile(filepath.Join(dir, rel), []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	text = strings.ReplaceAll(text, "${file:"+mountDir+"/", "${file:"+filepath.ToSlash(dir)+"/")
	cfg, err := config.Parse([]byte(text), filepath.Join(dir, "xoauthd.yaml"))
	if err != nil {
		t.Fatalf("%s: the configuration does not validate: %v", where, err)
	}
	return cfg
}

// rawStoreKey returns store.key as written (before references resolve).
func rawStoreKey(t *testing.T, text string) string {
	t.Helper()
	var doc struct {
		Store struct {
			Key string `yaml:"key"`
		} `yaml:"store"`
	}
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Store.Key
}

// isLoopback reports whether a listen address is on a loopback address.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// portOf returns the port of a host:port or URL.
func portOf(t *testing.T, addr string) string {
	t.Helper()
	addr = strings.TrimPrefix(strings.TrimPrefix(addr, "http://"), "https://")
	addr, _, _ = strings.Cut(addr, "/")
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Errorf("%q has no port: %v", addr, err)
	}
	return port
}

// dockerInstruction is one instruction of the Dockerfile, continuation
// lines joined.
type dockerInstruction struct {
	op   string // upper case: FROM, RUN, ...
	args string
}

// readDockerfile splits the Dockerfile into instructions.
func readDockerfile(t *testing.T) []dockerInstruction {
	t.Helper()
	var out []dockerInstruction
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, dockerfile)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cont := strings.HasSuffix(line, "\\")
		cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
		if cont {
			continue
		}
		op, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, dockerInstruction{strings.ToUpper(op), strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// execForm decodes an exec-form (JSON array) argument list.
func execForm(t *testing.T, what, args string) []string {
	t.Helper()
	var argv []string
	if err := json.Unmarshal([]byte(args), &argv); err != nil {
		t.Errorf("%s %s is not in exec form (a JSON array; the image has no shell): %v", what, args, err)
	}
	return argv
}

func TestDockerfile(t *testing.T) {
	ins := readDockerfile(t)
	c := readCLI(t)
	var froms, runs []string
	var final struct{ user, health, entrypoint, cmd string }
	env := map[string]string{}
	var volumes []string
	for _, in := range ins {
		switch in.op {
		case "FROM":
			froms = append(froms, in.args)
			final.user, final.health, final.entrypoint, final.cmd = "", "", "", ""
			clear(env)
			volumes = nil
		case "RUN":
			runs = append(runs, in.args)
		case "USER":
			final.user = in.args
		case "HEALTHCHECK":
			final.health = in.args
		case "ENTRYPOINT":
			final.entrypoint = in.args
		case "CMD":
			final.cmd = in.args
		case "ENV":
			k, v, _ := strings.Cut(in.args, "=")
			env[k] = v
		case "VOLUME":
			volumes = append(volumes, execForm(t, "VOLUME", in.args)...)
		}
	}
	if len(froms) < 2 {
		t.Fatalf("FROM %q: want a multi-stage build", froms)
	}
	if last := froms[len(froms)-1]; !strings.Contains(last, "distroless/static") && !strings.HasPrefix(last, "scratch") {
		t.Errorf("final stage FROM %s: want distroless static or scratch", last)
	}
	build := strings.Join(runs, "\n")
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-X main.version=", "-X main.commit=", "./cmd/xoauthd", "-o /out/xoauthd"} {
		if !strings.Contains(build, want) {
			t.Errorf("the build does not use %q", want)
		}
	}
	checkLinkerVars(t, "version", "commit")
	if u := final.user; u == "" || u == "root" || strings.HasPrefix(u, "0:") || u == "0" {
		t.Errorf("USER %q: the final image must run as a non-root user", u)
	}
	if env["XOAUTHD_CONFIG"] != imageConfig {
		t.Errorf("ENV XOAUTHD_CONFIG=%q, want %s", env["XOAUTHD_CONFIG"], imageConfig)
	}
	if !slices.Contains(volumes, stateDir) {
		t.Errorf("VOLUME %q: want %s", volumes, stateDir)
	}
	_, healthCmd, ok := strings.Cut(final.health, "CMD ")
	if !ok {
		t.Fatalf("HEALTHCHECK %q: want CMD [...]", final.health)
	}
	health := execForm(t, "HEALTHCHECK CMD", healthCmd)
	if len(health) < 2 || health[0] != binary || health[1] != "health" {
		t.Errorf("HEALTHCHECK CMD %q: want %s health", health, binary)
	}
	c.check(t, "HEALTHCHECK", health)
	entry := execForm(t, "ENTRYPOINT", final.entrypoint)
	if !slices.Equal(entry, []string{binary}) {
		t.Errorf("ENTRYPOINT %q, want [%s]", entry, binary)
	}
	c.check(t, "ENTRYPOINT+CMD", append(entry, execForm(t, "CMD", final.cmd)...))
}

// checkLinkerVars checks that package main of cmd/xoauthd declares string
// variables with these names for -ldflags -X.
func checkLinkerVars(t *testing.T, names ...string) {
	t.Helper()
	fset := token.NewFileSet()
	pkgs, err := filepath.Glob(filepath.Join(cmdDir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, name := range pkgs {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.VAR {
				for _, s := range g.Specs {
					vs := s.(*ast.ValueSpec)
					for i, id := range vs.Names {
						if i < len(vs.Values) && stringLit(vs.Values[i]) != "" {
							found[id.Name] = true
						}
					}
				}
			}
		}
	}
	for _, n := range names {
		if !found[n] {
			t.Errorf("cmd/xoauthd has no package-level string variable %q for -X main.%s", n, n)
		}
	}
}

// unit is a parsed systemd unit file: section, key, values in order.
type unit map[string]map[string][]string

func readUnit(t *testing.T, name string) unit {
	t.Helper()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, name)))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.HasSuffix(line, "\\") {
				t.Fatalf("%s:%d: cannot read %q", name, n, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

// last returns the effective (last) value of a key, and whether it is set.
func (u unit) last(section, key string) (string, bool) {
	vs := u[section][key]
	if len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}

func TestSystemdUnit(t *testing.T) {
	const name = "systemd/xoauthd.service"
	u := readUnit(t, name)
	want := map[string]string{
		"Restart":                 "on-failure",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"CapabilityBoundingSet":   "",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"MemoryDenyWriteExecute":  "yes",
		"LockPersonality":         "yes",
		"RestrictNamespaces":      "yes",
		"RestrictSUIDSGID":        "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectControlGroups":    "yes",
		"SystemCallArchitectures": "native",
		"StateDirectory":          "xoauthd",
		"ConfigurationDirectory":  "xoauthd",
	}
	for k, v := range want {
		if got, ok := u.last("Service", k); !ok || got != v {
			t.Errorf("[Service] %s=%q (set: %v), want %q", k, got, ok, v)
		}
	}
	if filters := u["Service"]["SystemCallFilter"]; len(filters) == 0 || filters[0] != "@system-service" {
		t.Errorf("SystemCallFilter=%q, want @system-service first", filters)
	}
	user, _ := u.last("Service", "User")
	dynamic, _ := u.last("Service", "DynamicUser")
	if user == "" && dynamic != "yes" || user == "root" {
		t.Errorf("User=%q DynamicUser=%q: want a dedicated or dynamic user", user, dynamic)
	}
	if user != "" {
		checkSysusers(t, "systemd/xoauthd.sysusers", user)
	}
	if stop, _ := u.last("Service", "TimeoutStopSec"); !longerThanDrain(stop) {
		t.Errorf("TimeoutStopSec=%q: must exceed serve's %v drain by %v", stop, defaultDrain, stopMargin)
	}
	if wanted, _ := u.last("Install", "WantedBy"); wanted != "multi-user.target" {
		t.Errorf("[Install] WantedBy=%q", wanted)
	}

	start, _ := u.last("Service", "ExecStart")
	argv := strings.Fields(start)
	readCLI(t).check(t, "ExecStart", argv)
	cfgPath, _ := flagValue(argv, "config")
	confDir, _ := u.last("Service", "ConfigurationDirectory")
	if path.Dir(cfgPath) != "/etc/"+confDir {
		t.Errorf("ExecStart reads %q, not in ConfigurationDirectory /etc/%s", cfgPath, confDir)
	}
	if argv[0] != binary {
		t.Errorf("ExecStart runs %s, want %s", argv[0], binary)
	}
	// The example configuration keeps its store where the unit lets it write.
	state, _ := u.last("Service", "StateDirectory")
	cfg, err := config.Load(exampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cfg.Store.Path, "/var/lib/"+state+"/") {
		t.Errorf("config.example.yaml store.path %s is outside StateDirectory /var/lib/%s", cfg.Store.Path, state)
	}
	// Its key is apart from the store (SECURITY.md), where the service can
	// read it: in ConfigurationDirectory, which the install steps fill.
	if path.Dir(cfg.Store.KeyFile) != "/etc/"+confDir || len(cfg.Warnings()) != 0 {
		t.Errorf("config.example.yaml store key %s: want it in ConfigurationDirectory /etc/%s, apart from the store (warnings: %v)",
			cfg.Store.KeyFile, confDir, cfg.Warnings())
	}
	if unit := string(readFile(t, name)); !strings.Contains(unit, "> "+cfg.Store.KeyFile) {
		t.Errorf("the install steps in %s do not create the store key %s", name, cfg.Store.KeyFile)
	}
	verifyUnit(t, name)
}

// longerThanDrain reports whether a systemd time span like "45s" or "1min"
// exceeds the default drain by stopMargin.
func longerThanDrain(span string) bool {
	span = strings.ReplaceAll(strings.ReplaceAll(span, "min", "m"), "sec", "s")
	d, err := time.ParseDuration(span)
	return err == nil && d >= defaultDrain+stopMargin
}

// TestDefaultDrain: defaultDrain is serve's, and serve's default exits
// within the 10 s that docker stop waits by default.
func TestDefaultDrain(t *testing.T) {
	src := string(readFile(t, cmdDir+"/serve.go"))
	m := regexp.MustCompile(`defaultDrain = (\d+) \* time\.Second`).FindStringSubmatch(src)
	if m == nil {
		t.Fatal("serve.go does not define defaultDrain as N * time.Second")
	}
	if got := m[1] + "s"; got != defaultDrain.String() {
		t.Errorf("serve's default drain is %s, these tests assume %v", got, defaultDrain)
	}
	if defaultDrain+stopMargin > 10*time.Second {
		t.Errorf("the default drain %v does not leave %v inside docker stop's 10 s", defaultDrain, stopMargin)
	}
}

// checkSysusers checks that the sysusers.d file creates user.
func checkSysusers(t *testing.T, name, user string) {
	t.Helper()
	for line := range strings.Lines(string(readFile(t, name))) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "u" && f[1] == user {
			return
		}
	}
	t.Errorf("%s does not create user %s", name, user)
}

// verifyUnit runs systemd-analyze verify on a copy of the unit whose
// ExecStart points at a stand-in executable, when systemd-analyze exists.
func verifyUnit(t *testing.T, name string) {
	t.Helper()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: unit not verified by systemd")
		return
	}
	dir := t.TempDir()
	stand := filepath.Join(dir, "xoauthd")
	if err := os.WriteFile(stand, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(readFile(t, name)), binary, stand)
	copyPath := filepath.Join(dir, "xoauthd.service")
	if err := os.WriteFile(copyPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", copyPath).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// Warnings (an unknown key, a bad value) exit 0: fail on any line that
	// names the unit file.
	for line := range strings.Lines(string(out)) {
		if strings.Contains(line, copyPath) {
			t.Errorf("systemd-analyze verify: %s", strings.TrimSpace(strings.ReplaceAll(line, copyPath, name)))
		}
	}
}
