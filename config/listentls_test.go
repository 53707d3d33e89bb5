package config

import (
	"crypto/tls"
	"strings"
	"testing"
)

func TestIsLoopbackListen(t *testing.T) {
	tests := []struct {
		listen string
		want   bool
	}{
		{"127.0.0.1:1143", true},
		{"127.0.0.2:1143", true},
		{"[::1]:1143", true},
		{"localhost:1143", true},
		{":1143", false},
		{"0.0.0.0:1143", false},
		{"[::]:1143", false},
		{"192.0.2.10:1143", false},
		{"10.0.0.1:993", false},
		{"[2001:db8::1]:993", false},
		{"mail.example.com:993", false},
		{"not an address", false},
	}
	for _, tt := range tests {
		if got := IsLoopbackListen(tt.listen); got != tt.want {
			t.Errorf("IsLoopbackListen(%q) = %v, want %v", tt.listen, got, tt.want)
		}
	}
}

func TestLoginNeedsTLS(t *testing.T) {
	tests := []struct {
		listen         string
		allowPlaintext bool
		want           bool
	}{
		{"127.0.0.1:1143", false, false},
		{"[::1]:1143", false, false},
		{"192.0.2.10:1143", false, true},
		{":1143", false, true},
		{"192.0.2.10:1143", true, false},
		{":1143", true, false},
	}
	for _, tt := range tests {
		s := &Server{Listen: tt.listen, AllowPlaintext: tt.allowPlaintext}
		if got := s.LoginNeedsTLS(); got != tt.want {
			t.Errorf("listen %s allow_plaintext %v: LoginNeedsTLS = %v, want %v", tt.listen, tt.allowPlaintext, got, tt.want)
		}
	}
}

func TestListenerTLSProblems(t *testing.T) {
	const at = "listen: 127.0.0.1:1143"
	tests := []problemCase{
		{name: "plaintext on all interfaces", src: variant(t, at, `listen: ":1143"`), path: "servers[0].listen", line: 9,
			msg: `":1143" is not a loopback address and this server has no tls:`},
		{name: "plaintext on a LAN address", src: variant(t, at, "listen: 192.0.2.10:1143"), path: "servers[0].listen", line: 9,
			msg: "set allow_plaintext: true on this server if the network is trusted"},
		{name: "self_signed and cert", src: variant(t, at, at+"\n    tls: {self_signed: mail.test, cert: c.pem, key: k.pem}"), path: "servers[0].tls.self_signed", line: 10,
			msg: "either self_signed or cert and key"},
		{name: "self_signed not a host", src: variant(t, at, at+"\n    tls: {self_signed: \"mail server\"}"), path: "servers[0].tls.self_signed", line: 10,
			msg: "is not a host name or IP address"},
		{name: "self_signed with a path", src: variant(t, at, at+"\n    tls: {self_signed: ../../etc}"), path: "servers[0].tls.self_signed", line: 10,
			msg: "is not a host name"},
		{name: "tls without cert", src: variant(t, at, at+"\n    tls: {key: k.pem}"), path: "servers[0].tls.cert", line: 10,
			msg: "or use self_signed: HOST"},
		{name: "tls mode with self_signed", src: variant(t, at, at+"\n    tls: {self_signed: mail.test, mode: ssl}"), path: "servers[0].tls.mode", line: 10,
			msg: `unknown TLS mode "ssl"; known: implicit, starttls`},
		{name: "unknown min_version", src: variant(t, at, at+"\n    tls: {self_signed: mail.test, min_version: \"1.4\"}"), path: "servers[0].tls.min_version", line: 10,
			msg: `unknown TLS version "1.4"; known: 1.0, 1.1, 1.2, 1.3`},
		{name: "legacy TLS off loopback", src: variant(t, at, "listen: 0.0.0.0:1143\n    tls: {self_signed: mail.test, min_version: \"1.0\"}"), path: "servers[0].tls.min_version", line: 10,
			msg: "set allow_legacy_on_network: true under tls: if the network is trusted"},
		{name: "allow_plaintext not a bool", src: variant(t, at, at+"\n    allow_plaintext: maybe"), path: "servers[0].allow_plaintext", line: 10,
			msg: "true or false"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { checkOneProblem(t, tc) })
	}
}

func TestListenerTLSAccepted(t *testing.T) {
	const at = "listen: 127.0.0.1:1143"
	tests := []struct {
		name, src string
		check     func(t *testing.T, s Server)
	}{
		{"LAN with allow_plaintext", variant(t, at, "listen: 192.0.2.10:1143\n    allow_plaintext: true"), func(t *testing.T, s Server) {
			if s.TLS != nil || !s.AllowPlaintext || s.LoginNeedsTLS() {
				t.Errorf("server %+v", s)
			}
		}},
		{"LAN with self-signed TLS", variant(t, at, "listen: 0.0.0.0:1143\n    tls: {self_signed: mail.example.test}"), func(t *testing.T, s Server) {
			if s.TLS.SelfSigned != "mail.example.test" || s.TLS.Mode != TLSStartTLS || !s.LoginNeedsTLS() {
				t.Errorf("tls %+v, needs TLS %v", s.TLS, s.LoginNeedsTLS())
			}
		}},
		{"self-signed for an IP", variant(t, at, at+"\n    tls: {self_signed: \"192.0.2.10\", mode: implicit}"), func(t *testing.T, s Server) {
			if s.TLS.SelfSigned != "192.0.2.10" || s.TLS.Mode != TLSImplicit {
				t.Errorf("tls %+v", s.TLS)
			}
		}},
		{"default min_version", variant(t, at, at+"\n    tls: {self_signed: mail.test}"), func(t *testing.T, s Server) {
			if s.TLS.MinVersion != "1.2" || s.TLS.TLSVersion() != tls.VersionTLS12 || s.TLS.Legacy() {
				t.Errorf("tls %+v, want TLS 1.2 by default", s.TLS)
			}
		}},
		{"legacy on loopback, unquoted", variant(t, at, at+"\n    tls: {self_signed: mail.test, min_version: 1.0}"), func(t *testing.T, s Server) {
			if s.TLS.TLSVersion() != tls.VersionTLS10 || !s.TLS.Legacy() {
				t.Errorf("tls %+v, want TLS 1.0", s.TLS)
			}
		}},
		{"legacy off loopback, acknowledged", variant(t, at, "listen: 0.0.0.0:1143\n    tls: {self_signed: mail.test, min_version: \"1.1\", allow_legacy_on_network: true}"), func(t *testing.T, s Server) {
			if s.TLS.TLSVersion() != tls.VersionTLS11 || !s.TLS.AllowLegacyOnNetwork {
				t.Errorf("tls %+v", s.TLS)
			}
		}},
		{"TLS 1.3 only", variant(t, at, at+"\n    tls: {self_signed: mail.test, min_version: \"1.3\"}"), func(t *testing.T, s Server) {
			if s.TLS.TLSVersion() != tls.VersionTLS13 || s.TLS.Legacy() {
				t.Errorf("tls %+v", s.TLS)
			}
		}},
		{"files relative to the configuration", variant(t, at, at+"\n    tls: {cert: tls/c.pem, key: tls/k.pem}"), func(t *testing.T, s Server) {
			if !strings.HasSuffix(s.TLS.Cert, "/tls/c.pem") || !strings.HasPrefix(s.TLS.Cert, "/") || !strings.HasSuffix(s.TLS.Key, "/tls/k.pem") {
				t.Errorf("tls %+v, want absolute paths beside the configuration", s.TLS)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, ps, _ := parseIn(t, tt.src)
			if ps != nil {
				t.Fatalf("problems: %v", ps)
			}
			tt.check(t, cfg.Servers[0])
		})
	}
}

func TestValidHost(t *testing.T) {
	for h, want := range map[string]bool{
		"mail.example.com":                true,
		"localhost":                       true,
		"mail.example.com.":               true,
		"xn--bcher-kva.de":                true,
		"192.0.2.1":                       true,
		"::1":                             true,
		"":                                false,
		"-bad.example":                    false,
		"bad-.example":                    false,
		"a..b":                            false,
		"under_score.test":                false,
		"*.example.com":                   false,
		"has space":                       false,
		strings.Repeat("a", 64) + ".test": false,
		strings.Repeat(strings.Repeat("a", 60)+".", 5): false,
	} {
		if got := validHost(h); got != want {
			t.Errorf("validHost(%q) = %v, want %v", h, got, want)
		}
	}
}

// TestWarningsLegacyTLS: a listener that accepts TLS 1.0 or 1.1 is a
// warning with its path and line; TLS 1.2 and later are not.
func TestWarningsLegacyTLS(t *testing.T) {
	const at = "listen: 127.0.0.1:1143"
	cfg, ps, _ := parseIn(t, variant(t, at, at+"\n    tls: {self_signed: mail.test, min_version: \"1.0\"}"))
	if ps != nil {
		t.Fatal(ps)
	}
	ws := warningsAt(cfg, "servers[0].tls.min_version")
	if len(ws) != 1 || ws[0].Line != 10 || !strings.Contains(ws[0].Msg, "accepts TLS 1.0") {
		t.Fatalf("warnings %v, want one for servers[0].tls.min_version on line 10", ws)
	}
	cfg, ps, _ = parseIn(t, variant(t, at, at+"\n    tls: {self_signed: mail.test}"))
	if ps != nil {
		t.Fatal(ps)
	}
	if ws := warningsAt(cfg, "servers[0].tls.min_version"); len(ws) != 0 {
		t.Fatalf("warnings %v for TLS 1.2, want none", ws)
	}
}

// warningsAt returns cfg's warnings at path.
func warningsAt(cfg *Config, path string) Problems {
	var out Problems
	for _, w := range cfg.Warnings() {
		if w.Path == path {
			out = append(out, w)
		}
	}
	return out
}

// TestWarningsStoreKey: a key file in the token store's directory, set or
// found at the old default place, is a warning (SECURITY.md: one backup
// must not hold both); the default beside the configuration, with the store
// elsewhere, is not.
func TestWarningsStoreKey(t *testing.T) {
	key := strings.Repeat("ab", 32)
	tests := []struct {
		name, store string
		files       map[string]string
		path        string // "" means no warning
	}{
		{"key set beside the store", "store:\n  path: state/tokens.json\n  key: ${file:state/store.key}\n", nil, "store.key"},
		{"old default found beside the store", "store:\n  path: state/tokens.json\n", map[string]string{"state/store.key": key}, "store.key"},
		{"default apart from the store", "store:\n  path: state/tokens.json\n", nil, ""},
		{"key in a secret", "store:\n  path: state/tokens.json\n  key: ${file:secrets/store.key}\n", nil, ""},
	}
	rest := validYAML[strings.Index(validYAML, "providers:"):]
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err, _ := parseWithFiles(t, tt.store+rest, tt.files)
			if err != nil {
				t.Fatal(err)
			}
			var got Problems
			for _, w := range cfg.Warnings() {
				if strings.Contains(w.Msg, "token store's directory") {
					got = append(got, w)
				}
			}
			if tt.path == "" {
				if len(got) != 0 {
					t.Fatalf("warnings %v, want none", got)
				}
				return
			}
			if len(got) != 1 || got[0].Path != tt.path || got[0].Line == 0 {
				t.Fatalf("warnings %v, want one at %s with a line", got, tt.path)
			}
		})
	}
}
