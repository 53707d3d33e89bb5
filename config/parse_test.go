package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testHash is an argon2id hash of "change-me" (the one in config.example.yaml).
const testHash = "$argon2id$v=19$m=24576,t=2,p=1$CN+OY1B3VPKH6MoQedCaXg$wBVH52bUhlkgkOKHTHXGXk9L3zCoWdWBBag7EGay/t8"

// validYAML is a minimal valid configuration; table cases change one thing
// in it. Its lines: 1 store, 2 key, 3 providers, 4 m365, 5 type,
// 6 client_id, 7 servers, 8 protocol, 9 listen, 10 accounts, 11 login,
// 12 password_hash, 13 identity, 14 provider.
const validYAML = `store:
  key: ${file:store.key}
providers:
  m365:
    type: microsoft
    client_id: 3f2a5d1c-8b7e-4c2a-9e61-0d4b7a9c5e21
servers:
  - protocol: imap
    listen: 127.0.0.1:1143
accounts:
  - login: erp-billing
    password_hash: ` + testHash + `
    identity: billing@contoso.com
    provider: m365
`

// variant returns validYAML with old replaced by new (old must occur).
func variant(t *testing.T, old, new string) string {
	t.Helper()
	if !strings.Contains(validYAML, old) {
		t.Fatalf("variant: %q not in validYAML", old)
	}
	return strings.Replace(validYAML, old, new, 1)
}

// parseIn parses src as if it were xoauthd.yaml in a fresh directory.
func parseIn(t *testing.T, src string) (*Config, Problems, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "xoauthd.yaml")
	cfg, err := Parse([]byte(src), path)
	if err == nil {
		if cfg == nil {
			t.Fatal("Parse returned neither a config nor an error")
		}
		return cfg, nil, dir
	}
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("Parse error %v (%T) is not Problems", err, err)
	}
	if cfg != nil {
		t.Errorf("Parse returned a config together with problems")
	}
	return nil, ps, dir
}

func TestValidYAML(t *testing.T) {
	cfg, ps, _ := parseIn(t, validYAML)
	if ps != nil {
		t.Fatalf("validYAML: %v", ps)
	}
	if cfg.Providers["m365"].Line != 4 || cfg.Servers[0].Line != 8 || cfg.Accounts[0].Line != 11 {
		t.Errorf("lines: provider %d, server %d, account %d; want 4, 8, 11",
			cfg.Providers["m365"].Line, cfg.Servers[0].Line, cfg.Accounts[0].Line)
	}
}

// problemCase expects exactly one problem, at path and line, whose message
// contains msg.
type problemCase struct {
	name, src  string
	path       string
	line       int
	msg        string
	setenvName string // set to "value" for the case
}

func checkOneProblem(t *testing.T, tc problemCase) {
	t.Helper()
	if tc.setenvName != "" {
		t.Setenv(tc.setenvName, "value-of-secret")
	}
	_, ps, _ := parseIn(t, tc.src)
	if len(ps) != 1 {
		t.Fatalf("got %d problems, want 1:\n%v", len(ps), ps)
	}
	p := ps[0]
	if p.Path != tc.path || p.Line != tc.line || !strings.Contains(p.Msg, tc.msg) {
		t.Errorf("got  %s\nwant %s (line %d): ...%s...", p, tc.path, tc.line, tc.msg)
	}
}

func TestDecodeProblems(t *testing.T) {
	tests := []problemCase{
		{name: "unknown top key near", src: variant(t, "store:", "stor:"), path: "stor", line: 1, msg: `unknown key "stor"; did you mean "store"?`},
		{name: "unknown provider key", src: variant(t, "    client_id:", "    clientid:"), path: "providers.m365.clientid", line: 6, msg: `did you mean "client_id"?`},
		{name: "unknown server key lists known", src: variant(t, "    listen: 127.0.0.1:1143", "    listen: 127.0.0.1:1143\n    frobnicate: 1"), path: "servers[0].frobnicate", line: 10, msg: "known: protocol, listen, upstream, upstream_tls, ca_file"},
		{name: "yaml-less field is unknown", src: variant(t, "    provider: m365", "    provider: m365\n    line: 3"), path: "accounts[0].line", line: 15, msg: `unknown key "line"; known: login, password_hash`},
		{name: "duplicate key", src: variant(t, "  - login: erp-billing", "  - login: erp-billing\n    login: other"), path: "accounts[0].login", line: 12, msg: "appears twice (first on line 11)"},
		{name: "servers not a list", src: variant(t, "  - protocol: imap\n    listen: 127.0.0.1:1143", "  protocol: imap"), path: "servers", line: 8, msg: "expected a list"},
		{name: "int not a number", src: variant(t, "    listen: 127.0.0.1:1143", "    listen: 127.0.0.1:1143\n    max_connections: many"), path: "servers[0].max_connections", line: 10, msg: `expected a whole number, got "many"`},
		{name: "int is a float", src: variant(t, "    listen: 127.0.0.1:1143", "    listen: 127.0.0.1:1143\n    max_connections: 1.5"), path: "servers[0].max_connections", line: 10, msg: "whole number"},
		{name: "int quoted", src: variant(t, "    listen: 127.0.0.1:1143", "    listen: 127.0.0.1:1143\n    max_connections: \"5\""), path: "servers[0].max_connections", line: 10, msg: "whole number"},
		{name: "bool", src: "log: {trace: yes}\n" + validYAML, path: "log.trace", line: 1, msg: `expected true or false, got "yes"`},
		{name: "duration without unit", src: variant(t, "    listen: 127.0.0.1:1143", "    listen: 127.0.0.1:1143\n    idle_timeout: 30"), path: "servers[0].idle_timeout", line: 10, msg: "duration like 30s"},
		{name: "duration list", src: variant(t, "    listen: 127.0.0.1:1143", "    listen: 127.0.0.1:1143\n    idle_timeout: [1]"), path: "servers[0].idle_timeout", line: 10, msg: "got a list"},
		{name: "string is a list", src: variant(t, "listen: 127.0.0.1:1143", "listen: [127.0.0.1:1143]"), path: "servers[0].listen", line: 9, msg: "expected a single value, got a list"},
		{name: "secret is a mapping", src: variant(t, "password_hash: "+testHash, "password_hash: {a: b}"), path: "accounts[0].password_hash", line: 12, msg: "expected a single value, got a mapping"},
		{name: "scopes not a list", src: variant(t, "    type: microsoft", "    type: microsoft\n    scopes: mail"), path: "providers.m365.scopes", line: 6, msg: "expected a list"},
		{name: "reference outside secrets", src: variant(t, "client_id: 3f2a5d1c-8b7e-4c2a-9e61-0d4b7a9c5e21", "client_id: ${env:CLIENT_ID}"), path: "providers.m365.client_id", line: 6, msg: "resolved only in secret fields"},
		{name: "complex key", src: variant(t, "    type: microsoft", "    type: microsoft\n    ? [a]\n    : b"), path: "providers.m365", line: 6, msg: "plain name"},
		{name: "tls not a mapping", src: variant(t, "    listen: 127.0.0.1:1143", "    listen: 127.0.0.1:1143\n    tls: on"), path: "servers[0].tls", line: 10, msg: "expected a mapping"},
		{name: "merge of a scalar", src: variant(t, "    type: microsoft", "    type: microsoft\n    <<: 3"), path: "providers.m365", line: 6, msg: "<< merges mappings only"},
		{name: "syntax error", src: variant(t, "    listen: 127.0.0.1:1143", "    listen: [127.0.0.1:1143"), line: 9, msg: "YAML syntax"},
		{name: "tab indentation", src: "log:\n\tlevel: info\n", line: 2, msg: "YAML syntax"},
		// yaml.v3 names the line where the enclosing construct starts, or
		// where it noticed the problem (here the end of the file).
		{name: "unclosed flow mapping", src: "log: {level: info\n", line: 2, msg: "YAML syntax: did not find expected ',' or '}'"},
		{name: "list item in a mapping", src: "log:\n  level: info\n  - x\n", line: 2, msg: "YAML syntax: did not find expected key"},
		{name: "bad indentation", src: "store:\n  path: x\n key: y\n", line: 3, msg: "YAML syntax"},
		{name: "second document", src: validYAML + "---\nlog: {}\n", line: 15, msg: "second YAML document"},
		{name: "empty file", src: "", msg: "the file is empty"},
		{name: "only comments", src: "# nothing yet\n", msg: "the file is empty"},
		{name: "null document", src: "~\n", msg: "the file is empty"},
		{name: "top level list", src: "- a\n- b\n", line: 1, msg: "expected a mapping"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { checkOneProblem(t, tc) })
	}
}

func TestValidationProblems(t *testing.T) {
	const secondServer = "    listen: 127.0.0.1:1143\n  - protocol: pop3\n    listen: 127.0.0.1:1143"
	const secondAccount = "    provider: m365\n  - login: ERP-Billing\n    password_hash: " + testHash + "\n    identity: other@contoso.com\n"
	tests := []problemCase{
		{name: "unknown protocol", src: variant(t, "protocol: imap", "protocol: imap4"), path: "servers[0].protocol", line: 8, msg: `unknown protocol "imap4"; known: imap, pop3, smtp`},
		{name: "protocol missing", src: variant(t, "  - protocol: imap\n    listen", "  - listen"), path: "servers[0].protocol", line: 8, msg: "missing; set one of: imap, pop3, smtp"},
		{name: "listen without port", src: variant(t, "listen: 127.0.0.1:1143", "listen: localhost"), path: "servers[0].listen", line: 9, msg: `"localhost" is not host:port (missing port in address)`},
		{name: "listen port too big", src: variant(t, "listen: 127.0.0.1:1143", "listen: 127.0.0.1:70000"), path: "servers[0].listen", line: 9, msg: `port "70000" is not a number`},
		{name: "listen missing", src: variant(t, "    listen: 127.0.0.1:1143\n", ""), path: "servers[0].listen", line: 8, msg: "missing; the local address"},
		{name: "duplicate listen", src: variant(t, "    listen: 127.0.0.1:1143", secondServer), path: "servers[1].listen", line: 11, msg: "127.0.0.1:1143 is already used by servers[0] (line 8)"},
		{name: "listen same as admin", src: "admin: {listen: 127.0.0.1:1143}\n" + validYAML, path: "servers[0].listen", line: 10, msg: "already used by admin.listen"},
		{name: "admin listen bad", src: "admin: {listen: nine-nine}\n" + validYAML, path: "admin.listen", line: 1, msg: "not host:port"},
		{name: "upstream without port", src: variant(t, "listen: 127.0.0.1:1143", "listen: 127.0.0.1:1143\n    upstream: outlook.office365.com"), path: "servers[0].upstream", line: 10, msg: "not host:port"},
		{name: "upstream without host", src: variant(t, "listen: 127.0.0.1:1143", "listen: 127.0.0.1:1143\n    upstream: \":993\""), path: "servers[0].upstream", line: 10, msg: "has no host"},
		{name: "upstream port zero", src: variant(t, "listen: 127.0.0.1:1143", "listen: 127.0.0.1:1143\n    upstream: mail:0"), path: "servers[0].upstream", line: 10, msg: "from 1 to 65535"},
		{name: "upstream_tls", src: variant(t, "listen: 127.0.0.1:1143", "listen: 127.0.0.1:1143\n    upstream_tls: ssl"), path: "servers[0].upstream_tls", line: 10, msg: `unknown upstream TLS mode "ssl"; known: implicit, starttls`},
		{name: "negative limit", src: variant(t, "listen: 127.0.0.1:1143", "listen: 127.0.0.1:1143\n    max_connections: -1"), path: "servers[0].max_connections", line: 10, msg: "must not be negative"},
		{name: "negative idle", src: variant(t, "listen: 127.0.0.1:1143", "listen: 127.0.0.1:1143\n    idle_timeout: -5m"), path: "servers[0].idle_timeout", line: 10, msg: "must not be negative"},
		{name: "tls without key", src: variant(t, "listen: 127.0.0.1:1143", "listen: 127.0.0.1:1143\n    tls: {cert: c.pem}"), path: "servers[0].tls.key", line: 10, msg: "missing; the PEM private key"},
		{name: "tls mode", src: variant(t, "listen: 127.0.0.1:1143", "listen: 127.0.0.1:1143\n    tls: {cert: c.pem, key: k.pem, mode: always}"), path: "servers[0].tls.mode", line: 10, msg: `unknown TLS mode "always"`},
		{name: "provider type missing", src: variant(t, "    type: microsoft\n", ""), path: "providers.m365.type", line: 4, msg: "missing; set one of: microsoft, google, custom"},
		{name: "provider type unknown", src: variant(t, "type: microsoft", "type: azure"), path: "providers.m365.type", line: 5, msg: `unknown provider type "azure"`},
		{name: "flow unknown", src: variant(t, "    type: microsoft", "    type: microsoft\n    flow: password"), path: "providers.m365.flow", line: 6, msg: `unknown flow "password"; known: authcode, device, client_credentials`},
		{name: "client_id missing", src: variant(t, "    client_id: 3f2a5d1c-8b7e-4c2a-9e61-0d4b7a9c5e21\n", ""), path: "providers.m365.client_id", line: 4, msg: "missing; copy the application (client) ID"},
		{name: "client_credentials without secret", src: variant(t, "    type: microsoft", "    type: microsoft\n    flow: client_credentials\n    tenant: contoso.onmicrosoft.com"), path: "providers.m365.client_secret", line: 4, msg: "client_credentials flow needs one"},
		{name: "client_credentials on organizations", src: variant(t, "    type: microsoft", "    type: microsoft\n    flow: client_credentials\n    client_secret: ${env:XOAUTHD_TEST_SECRET}"), setenvName: "XOAUTHD_TEST_SECRET", path: "providers.m365.tenant", line: 4, msg: `needs your own tenant, not "organizations"`},
		{name: "tenant with slash", src: variant(t, "    type: microsoft", "    type: microsoft\n    tenant: contoso/v2.0"), path: "providers.m365.tenant", line: 6, msg: "is not a tenant"},
		{name: "google device", src: variant(t, "type: microsoft", "type: google\n    flow: device"), path: "providers.m365.flow", line: 6, msg: "device flow does not allow the Gmail scope"},
		{name: "google client_credentials", src: variant(t, "type: microsoft", "type: google\n    flow: client_credentials\n    client_secret: ${env:XOAUTHD_TEST_SECRET}"), setenvName: "XOAUTHD_TEST_SECRET", path: "providers.m365.flow", line: 6, msg: "no client_credentials flow for Gmail"},
		{name: "authority over http", src: variant(t, "    type: microsoft", "    type: microsoft\n    authority: http://login.example.com"), path: "providers.m365.authority", line: 6, msg: "must use https (http is allowed for localhost only)"},
		{name: "token_url not a url", src: variant(t, "    type: microsoft", "    type: microsoft\n    token_url: /oauth2/token"), path: "providers.m365.token_url", line: 6, msg: "not an absolute https URL"},
		{name: "scope with space", src: variant(t, "    type: microsoft", "    type: microsoft\n    scopes: [\"openid email\"]"), path: "providers.m365.scopes[0]", line: 6, msg: "one word without spaces"},
		{name: "upstreams unknown protocol", src: variant(t, "    type: microsoft", "    type: microsoft\n    upstreams: {imap4: \"mail:993\"}"), path: "providers.m365.upstreams.imap4", line: 6, msg: `unknown protocol "imap4"`},
		{name: "upstreams bad address", src: variant(t, "    type: microsoft", "    type: microsoft\n    upstreams:\n      smtp: mail"), path: "providers.m365.upstreams.smtp", line: 7, msg: "not host:port"},
		{name: "provider name", src: strings.ReplaceAll(validYAML, "m365", "m.365"), path: "providers.m.365", line: 4, msg: "may only use letters, digits, - and _"},
		{name: "duplicate login", src: variant(t, "    provider: m365\n", secondAccount), path: "accounts[1].login", line: 15, msg: `login "ERP-Billing" is already used by accounts[0] (line 11); logins are case-insensitive`},
		{name: "login with space", src: variant(t, "login: erp-billing", "login: erp billing"), path: "accounts[0].login", line: 11, msg: "must not contain spaces"},
		{name: "login missing", src: variant(t, "  - login: erp-billing\n    password_hash", "  - password_hash"), path: "accounts[0].login", line: 11, msg: "missing; the user name"},
		{name: "identity not an address", src: variant(t, "identity: billing@contoso.com", "identity: billing"), path: "accounts[0].identity", line: 13, msg: `"billing" is not an email address`},
		{name: "identity with display name", src: variant(t, "identity: billing@contoso.com", "identity: Billing <billing@contoso.com>"), path: "accounts[0].identity", line: 13, msg: "is not an email address"},
		{name: "identity missing", src: variant(t, "    identity: billing@contoso.com\n", ""), path: "accounts[0].identity", line: 11, msg: "missing; the address whose OAuth token"},
		{name: "mailbox not an address", src: variant(t, "    provider: m365", "    provider: m365\n    mailbox: shared"), path: "accounts[0].mailbox", line: 15, msg: "is not an email address"},
		{name: "unknown provider", src: variant(t, "provider: m365", "provider: m356"), path: "accounts[0].provider", line: 14, msg: `unknown provider "m356"; known: m365`},
		{name: "no providers", src: variant(t, "providers:\n  m365:\n    type: microsoft\n    client_id: 3f2a5d1c-8b7e-4c2a-9e61-0d4b7a9c5e21\n", ""), path: "accounts[0].provider", line: 10, msg: "no providers are configured"},
		{name: "password_hash missing", src: variant(t, "    password_hash: "+testHash+"\n", ""), path: "accounts[0].password_hash", line: 11, msg: "missing; generate one with: xoauthd hash-password"},
		{name: "password_hash bcrypt", src: variant(t, testHash, "$2y$10$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui"), path: "accounts[0].password_hash", line: 12, msg: "not a valid argon2id PHC string"},
		{name: "password_hash huge cost", src: variant(t, "m=24576,t=2", "m=4194304,t=2"), path: "accounts[0].password_hash", line: 12, msg: "outside"},
		{name: "log level", src: "log: {level: verbose}\n" + validYAML, path: "log.level", line: 1, msg: `unknown log level "verbose"; known: debug, info, warn, error`},
		{name: "log format", src: "log:\n  format: xml\n" + validYAML, path: "log.format", line: 2, msg: `unknown log format "xml"; known: text, json`},
		{name: "store key literal invalid", src: variant(t, "key: ${file:store.key}", "key: not-a-key"), path: "store.key", line: 2, msg: "must be 32 random bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { checkOneProblem(t, tc) })
	}
}

func TestProviderMissingWithTwoProviders(t *testing.T) {
	src := variant(t, "servers:", "  gmail:\n    type: google\n    client_id: x.apps.googleusercontent.com\nservers:")
	src = strings.Replace(src, "    provider: m365\n", "", 1)
	checkOneProblem(t, problemCase{src: src, path: "accounts[0].provider", line: 14, msg: "missing; name one of: gmail, m365"})
}

func TestCustomProviderNeeds(t *testing.T) {
	src := variant(t, "type: microsoft", "type: custom")
	_, ps, _ := parseIn(t, src)
	want := []string{
		"providers.m365.token_url (line 4): missing; a custom provider needs its token endpoint",
		"providers.m365.auth_url (line 4): missing; the authcode flow needs the authorization endpoint",
		"providers.m365.scopes (line 4): missing; a custom provider needs the scopes to request",
		`servers[0].upstream (line 8): missing, and provider "m365" has no upstreams.imap; set upstream here or on the provider`,
	}
	if got := problemStrings(ps); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func problemStrings(ps Problems) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

// TestThreeMistakes is the acceptance case: a file with three
// mistakes of different kinds reports all three, in line order, with lines.
func TestThreeMistakes(t *testing.T) {
	_, err := Load("testdata/three-mistakes.yaml")
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("Load = %v, want Problems", err)
	}
	want := []string{
		`providers.m365.clientsecret (line 9): unknown key "clientsecret"; did you mean "client_secret"?`,
		`servers[0].protocol (line 11): unknown protocol "imap4"; known: imap, pop3, smtp`,
		`accounts[0].provider (line 17): unknown provider "m356"; known: m365`,
	}
	if got := problemStrings(ps); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err.Error() != strings.Join(want, "\n") {
		t.Errorf("Error() = %q", err.Error())
	}
}

// TestDecodeProblemNotRepeated: a value that fails to decode is not also
// reported as missing by validation.
func TestDecodeProblemNotRepeated(t *testing.T) {
	src := variant(t, "identity: billing@contoso.com", "identity: [billing@contoso.com]")
	checkOneProblem(t, problemCase{src: src, path: "accounts[0].identity", line: 13, msg: "expected a single value"})
}

func TestExample(t *testing.T) {
	cfg, err := Load("../config.example.yaml")
	if err != nil {
		t.Fatalf("config.example.yaml: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate after Load: %v", err)
	}
	p := cfg.Providers["m365"]
	if p == nil || !p.ClientSecret.IsZero() || p.Tenant != "contoso.onmicrosoft.com" {
		t.Fatalf("providers.m365 = %+v", p)
	}
	if len(cfg.Servers) != 3 || len(cfg.Accounts) != 2 {
		t.Fatalf("%d servers, %d accounts; want 3, 2", len(cfg.Servers), len(cfg.Accounts))
	}
	if cfg.Store.KeyFile != "/etc/xoauthd/store.key" || cfg.Store.Path != "/var/lib/xoauthd/tokens.json" {
		t.Errorf("store = %+v", cfg.Store)
	}
	if a := cfg.Account("ERP-BILLING"); a == nil || a.Identity != "billing@contoso.com" {
		t.Errorf("Account(ERP-BILLING) = %+v", a)
	}
}

// TestExampleNeedsItsSecret: with the confidential-client line of the example
// enabled, a missing environment variable is exactly one problem.
func TestExampleNeedsItsSecret(t *testing.T) {
	t.Setenv("M365_CLIENT_SECRET", "")
	os.Unsetenv("M365_CLIENT_SECRET")
	src, err := os.ReadFile("../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src = []byte(strings.Replace(string(src), "# client_secret: ${env:M365_CLIENT_SECRET}", "client_secret: ${env:M365_CLIENT_SECRET}", 1))
	_, err = Parse(src, "example.yaml")
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != 1 || ps[0].Path != "providers.m365.client_secret" ||
		!strings.Contains(ps[0].Msg, "M365_CLIENT_SECRET is not set") || ps[0].Line == 0 {
		t.Fatalf("Load = %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	var ps Problems
	if err == nil || errors.As(err, &ps) || !strings.Contains(err.Error(), "--config") {
		t.Errorf("Load(missing) = %v; want a plain error with a hint", err)
	}
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, []byte("# "+strings.Repeat("x", maxConfigBytes)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); !errors.As(err, &ps) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load(big) = %v; want a size problem", err)
	}
}

func TestFixturesValid(t *testing.T) {
	for _, name := range []string{"minimal.yaml", "google.yaml", "custom.yaml"} {
		if _, err := Load(filepath.Join("testdata", name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestMergeKeys(t *testing.T) {
	cfg, err := Load("testdata/custom.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Servers[1]
	if s.Protocol != ProtoIMAP || s.Listen != "127.0.0.1:1993" || s.MaxConnections != 50 ||
		s.TLS == nil || s.TLS.Mode != TLSImplicit || s.Line != 23 {
		t.Errorf("merged server = %+v (tls %+v)", s, s.TLS)
	}
}

func TestAliasBomb(t *testing.T) {
	// Each level merges the previous one ten times: 10^8 entries if expanded.
	var b strings.Builder
	b.WriteString("providers:\n  p0: &p0 {type: custom}\n")
	for i := 1; i <= 8; i++ {
		fmt.Fprintf(&b, "  p%d: &p%d {<<: [", i, i)
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*p%d", i-1)
		}
		b.WriteString("]}\n")
	}
	_, ps, _ := parseIn(t, b.String())
	found := false
	for _, p := range ps {
		found = found || strings.Contains(p.Msg, "aliases are expanded") || strings.Contains(p.Msg, "nest deeper")
	}
	if !found {
		t.Errorf("alias bomb not refused: %d problems, first %v", len(ps), ps[:min(3, len(ps))])
	}
}

func TestRecursiveMerge(t *testing.T) {
	_, ps, _ := parseIn(t, "log: &l {<<: *l}\n")
	if len(ps) == 0 || !strings.Contains(ps.Error(), "<<") {
		t.Errorf("recursive merge: %v", ps)
	}
}

func TestProblemString(t *testing.T) {
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{Path: "accounts[2].provider", Line: 41, Msg: "m"}, "accounts[2].provider (line 41): m"},
		{Problem{Path: "store.path", Msg: "m"}, "store.path: m"},
		{Problem{Line: 3, Msg: "m"}, "line 3: m"},
		{Problem{Msg: "m"}, "m"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.p, got, tt.want)
		}
	}
	if err := (Problems{}).err(); err != nil {
		t.Errorf("empty Problems as error = %v", err)
	}
}

// TestValidateInCode covers a Config built in code: no lines, but the same
// checks, and ApplyDefaults makes it valid.
func TestValidateInCode(t *testing.T) {
	cfg := &Config{
		Providers: map[string]*Provider{"m365": {Type: TypeMicrosoft, ClientID: "id"}},
		Servers:   []Server{{Protocol: ProtoSMTP, Listen: "127.0.0.1:0"}, {Protocol: ProtoSMTP, Listen: "127.0.0.1:0"}},
		Accounts:  []Account{{Login: "a", PasswordHash: testHash, Identity: "a@contoso.com", Provider: "m365"}},
	}
	err := cfg.Validate()
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("Validate before defaults = %v; want problems", err)
	}
	for _, p := range ps {
		if p.Line != 0 {
			t.Errorf("problem with a line in a code-built config: %v", p)
		}
	}
	if !strings.Contains(err.Error(), "log.level: missing") || !strings.Contains(err.Error(), "providers.m365.flow: missing") {
		t.Errorf("Validate before defaults:\n%v", err)
	}
	cfg.ApplyDefaults()
	cfg.ApplyDefaults() // idempotent
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate after ApplyDefaults (port 0 twice is fine): %v", err)
	}
	if cfg.Store.Path != DefaultStoreFile || cfg.Store.KeyFile != DefaultKeyFile {
		t.Errorf("store defaults without a path: %+v", cfg.Store)
	}
	cfg.Store = Store{}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "store.path: missing") || !strings.Contains(err.Error(), "store.key: missing") {
		t.Errorf("Validate with an empty store = %v", err)
	}
}

// TestProblemsCapped: a file that is wrong everywhere reports the first
// maxProblems problems and counts the rest.
func TestProblemsCapped(t *testing.T) {
	src := "accounts:\n" + strings.Repeat("  - {login: a, identity: x, provider: p}\n", 3*maxProblems)
	_, ps, _ := parseIn(t, src)
	if len(ps) != maxProblems+1 {
		t.Fatalf("got %d problems, want %d", len(ps), maxProblems+1)
	}
	if last := ps[len(ps)-1]; !strings.Contains(last.Msg, "more problems") || last.Line != 0 {
		t.Errorf("last problem = %v", last)
	}
	if ps[0].Line != 2 {
		t.Errorf("first problem = %v; want line 2", ps[0])
	}
}
