package config

import (
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
