package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// maxConfigBytes bounds the configuration file.
const maxConfigBytes = 1 << 20

// EnvConfig names the environment variable that DefaultPath consults first.
const EnvConfig = "XOAUTHD_CONFIG"

// DefaultPath returns the configuration file to use when none is given:
// $XOAUTHD_CONFIG when set; else xoauthd.yaml in the working directory when
// it exists; else xoauthd/xoauthd.yaml in the platform's user configuration
// directory (os.UserConfigDir: $XDG_CONFIG_HOME or ~/.config on Linux,
// ~/Library/Application Support on macOS, %AppData% on Windows).
func DefaultPath() string {
	if p := os.Getenv(EnvConfig); p != "" {
		return p
	}
	const name = "xoauthd.yaml"
	if st, err := os.Stat(name); err == nil && !st.IsDir() {
		return name
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return name
	}
	return filepath.Join(dir, "xoauthd", name)
}

// Load reads the configuration file at path and parses it like Parse.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading configuration: %w (start from config.example.yaml, or pass --config FILE)", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading configuration %s: %w", path, err)
	}
	return Parse(data, path)
}

// Parse decodes a configuration strictly, resolves ${env:NAME} and
// ${file:PATH} references in secret fields, fills in defaults and provider
// presets and validates the result. Relative paths in the file (store.path,
// ${file:}, ca_file, tls.cert, tls.key, client_certificate) are taken
// relative to the directory of path. On any problem it returns a nil Config and Problems
// holding every decode and validation problem, ordered by line.
func Parse(data []byte, path string) (*Config, error) {
	if len(data) > maxConfigBytes {
		return nil, Problems{{Msg: fmt.Sprintf("the file is larger than %d bytes; is it the right file?", maxConfigBytes)}}
	}
	root, ps := parseYAML(data)
	if ps != nil {
		return nil, ps
	}
	refs := &resolver{dir: filepath.Dir(path), lookupEnv: os.LookupEnv}
	d := newDecoder(refs)
	cfg := &Config{Path: path, lines: d.lines}
	d.decode(root, reflect.ValueOf(cfg).Elem(), "")
	cfg.resolvePaths(refs)
	cfg.Store.KeyFile = refs.keyFile
	cfg.ApplyDefaults()
	if cfg.Store.Key == "" && refs.keyFile == "" {
		cfg.Store.adoptOldDefaultKey()
	}
	if cfg.Store.Key == "" && cfg.Store.KeyFile != "" {
		d.readKey(cfg)
	}
	d.clientCertificates(cfg) // clientcert.go
	problems, dropped := d.problems, d.dropped
	vps, vdropped := cfg.validate()
	for _, p := range vps {
		if !d.explained(p.Path) {
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 || dropped+vdropped > 0 {
		problems.sortByLine()
		return nil, problems.capped(dropped + vdropped)
	}
	return cfg, nil
}

// parseYAML parses exactly one YAML document and returns its root node.
func parseYAML(data []byte) (*yaml.Node, Problems) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Problems{{Msg: "the file is empty; start from config.example.yaml"}}
		}
		return nil, Problems{syntaxProblem(err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, Problems{syntaxProblem(err)}
		}
		return nil, Problems{{Line: extra.Line, Msg: "a second YAML document (after ---); keep the configuration in one document"}}
	}
	root := &doc
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		root = doc.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return nil, Problems{{Msg: "the file is empty; start from config.example.yaml"}}
	}
	return root, nil
}

// parserProblems are the yaml.v3 parser's (not scanner's) messages. For
// these, yaml.v3 v3.0.1 reports a 0-based line (its fail() adds 1 for
// scanner errors only), and no line at all for line 1.
var parserProblems = []string{
	"did not find expected <document start>",
	"did not find expected node content",
	"did not find expected key",
	"did not find expected '-' indicator",
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"found undefined tag handle",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found duplicate %TAG directive",
}

// syntaxProblem turns a yaml.v3 error ("yaml: line 5: did not find expected
// key") into a Problem with the line split out and corrected. The line is
// where the enclosing construct starts, which may be above the mistake.
func syntaxProblem(err error) Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, text, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				line, msg = n, text
			}
		}
	}
	if slices.Contains(parserProblems, msg) {
		line++
	}
	return Problem{Line: line, Msg: "YAML syntax: " + msg}
}

// explained reports whether a validation problem at path follows from a
// decode problem already reported at or above it (a value that could not be
// decoded is left empty and would otherwise be reported twice).
func (d *decoder) explained(path string) bool {
	for p := path; ; p = parentPath(p) {
		if d.failed[p] {
			return true
		}
		if p == "" {
			return false
		}
	}
}

// readKey reads the store key from Store.KeyFile; a missing file is fine
// (the token store creates it), any other failure is a problem.
func (d *decoder) readKey(cfg *Config) {
	key, err := readSecretFile(cfg.Store.KeyFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		d.addf(storeKeyPath, d.lines.line(storeKeyPath), "%v", err)
	default:
		cfg.Store.Key = Secret(key)
	}
}

// adoptOldDefaultKey keeps an installation working that relied on the old
// default key file, store.key beside the token store: when the default
// (beside the configuration) does not exist and that one does, it is used,
// and Warnings says to move it.
func (s *Store) adoptOldDefaultKey() {
	old := filepath.Join(filepath.Dir(s.Path), DefaultKeyFile)
	if old == s.KeyFile {
		return
	}
	if _, err := os.Stat(s.KeyFile); !errors.Is(err, fs.ErrNotExist) {
		return
	}
	if st, err := os.Stat(old); err == nil && st.Mode().IsRegular() {
		s.KeyFile = old
	}
}

// resolvePaths makes relative file paths relative to the configuration's
// directory.
func (c *Config) resolvePaths(r *resolver) {
	rel := func(p *string) {
		if *p != "" {
			*p = r.path(*p)
		}
	}
	rel(&c.Store.Path)
	for _, p := range c.Providers {
		if p != nil && p.ClientCertificate != nil {
			rel(&p.ClientCertificate.Cert)
			rel(&p.ClientCertificate.Key)
		}
	}
	for i := range c.Servers {
		s := &c.Servers[i]
		rel(&s.CAFile)
		if s.TLS != nil {
			rel(&s.TLS.Cert)
			rel(&s.TLS.Key)
		}
	}
}
