package config

import (
	"net/netip"
	"strings"
	"testing"
)

// noAuthYAML is validYAML with an SMTP listener whose no_auth: is body
// (lines: 10 protocol smtp, 11 listen, 12 upstream, 13 no_auth, 14.. its keys).
func noAuthYAML(t *testing.T, listen, body string) string {
	return variant(t, "accounts:", "  - protocol: smtp\n    listen: "+listen+"\n    upstream: smtp.example.com:587\n    no_auth:\n"+body+"accounts:")
}

func TestNoAuthValid(t *testing.T) {
	cfg, ps, _ := parseIn(t, noAuthYAML(t, "127.0.0.1:25", "      account: ERP-Billing\n      from: [127.0.0.0/8, \"::1/128\", 192.168.10.7]\n"))
	if ps != nil {
		t.Fatalf("problems: %v", ps)
	}
	n := cfg.Servers[1].NoAuth
	cases := []struct {
		addr string
		rule string
	}{
		{"127.0.0.1", "127.0.0.0/8"},
		{"127.200.0.3", "127.0.0.0/8"},
		{"::ffff:127.0.0.1", "127.0.0.0/8"}, // an IPv4 client on a dual-stack socket
		{"::1", "::1/128"},
		{"192.168.10.7", "192.168.10.7"},
		{"192.168.10.8", ""},
		{"10.0.0.1", ""},
		{"::2", ""},
	}
	for _, c := range cases {
		rule, ok := n.Admits(netip.MustParseAddr(c.addr))
		if rule != c.rule || ok != (c.rule != "") {
			t.Errorf("Admits(%s) = %q, %v; want %q", c.addr, rule, ok, c.rule)
		}
	}
	if _, ok := (*NoAuth)(nil).Admits(netip.MustParseAddr("127.0.0.1")); ok {
		t.Error("a listener without no_auth admits a client")
	}
	if w := cfg.Warnings(); len(w) != 0 {
		t.Errorf("warnings for loopback and one LAN address: %v", w)
	}
}

func TestNoAuthProblems(t *testing.T) {
	tests := []problemCase{
		{name: "from missing on loopback", src: noAuthYAML(t, "127.0.0.1:25", "      account: erp-billing\n"),
			path: "servers[1].no_auth.from", line: 13, msg: "missing; list the client networks"},
		{name: "from missing beyond loopback", src: noAuthYAML(t, "0.0.0.0:25\n    allow_plaintext: true", "      account: erp-billing\n"),
			path: "servers[1].no_auth.from", line: 14, msg: `"0.0.0.0:25" listens beyond this machine`},
		{name: "from empty", src: noAuthYAML(t, "127.0.0.1:25", "      account: erp-billing\n      from: []\n"),
			path: "servers[1].no_auth.from", line: 15, msg: "missing"},
		{name: "unknown account", src: noAuthYAML(t, "127.0.0.1:25", "      account: scanner\n      from: [127.0.0.1]\n"),
			path: "servers[1].no_auth.account", line: 14, msg: `unknown account "scanner"`},
		{name: "account missing", src: noAuthYAML(t, "127.0.0.1:25", "      from: [127.0.0.1]\n"),
			path: "servers[1].no_auth.account", line: 13, msg: "missing; the login of the account"},
		{name: "bad network", src: noAuthYAML(t, "127.0.0.1:25", "      account: erp-billing\n      from: [127.0.0.0/33]\n"),
			path: "servers[1].no_auth.from[0]", line: 15, msg: "is not a network or address"},
		{name: "host name is no network", src: noAuthYAML(t, "127.0.0.1:25", "      account: erp-billing\n      from: [printer.lan]\n"),
			path: "servers[1].no_auth.from[0]", line: 15, msg: "is not a network or address"},
		{name: "imap listener", src: variant(t, "    listen: 127.0.0.1:1143", "    listen: 127.0.0.1:1143\n    no_auth: {account: erp-billing, from: [127.0.0.1]}"),
			path: "servers[0].no_auth", line: 10, msg: "smtp servers only"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { checkOneProblem(t, tc) })
	}
}

func TestNoAuthWideNetworkWarnings(t *testing.T) {
	cfg, ps, _ := parseIn(t, noAuthYAML(t, "0.0.0.0:25\n    allow_plaintext: true",
		"      account: erp-billing\n      from: [0.0.0.0/0, \"::/0\", 10.0.0.0/8, 8.8.0.0/16, 203.0.113.0/24, \"2001:db8::/32\"]\n"))
	if ps != nil {
		t.Fatalf("problems: %v", ps)
	}
	var got []string
	for _, w := range cfg.Warnings() {
		if w.Line != 16 {
			t.Errorf("warning on line %d, want 16: %s", w.Line, w)
		}
		got = append(got, w.Path+": "+w.Msg)
	}
	want := []string{
		`servers[1].no_auth.from[0]: "0.0.0.0/0" admits every address`,
		`servers[1].no_auth.from[1]: "::/0" admits every address`,
		`servers[1].no_auth.from[3]: "8.8.0.0/16" admits a wide range of public addresses`,
		`servers[1].no_auth.from[5]: "2001:db8::/32" admits a wide range of public addresses`,
	}
	if len(got) != len(want) {
		t.Fatalf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) || !strings.Contains(got[i], "may send mail as erp-billing without a password") {
			t.Errorf("warning %d: %s\nwant %s...", i, got[i], want[i])
		}
	}
}
