package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseSendRate(t *testing.T) {
	good := []struct {
		in   string
		want SendRate
		str  string
	}{
		{"30/min", SendRate{30, time.Minute}, "30/min"},
		{"5/s", SendRate{5, time.Second}, "5/s"},
		{"1000/hour", SendRate{1000, time.Hour}, "1000/hour"},
		{" 12 / Minute ", SendRate{12, time.Minute}, "12/min"},
		{"0", SendRate{}, "0"},
		{"0/min", SendRate{}, "0"},
	}
	for _, c := range good {
		got, err := ParseSendRate(c.in)
		if err != nil || got != c.want || got.String() != c.str {
			t.Errorf("ParseSendRate(%q) = %+v (%s), %v; want %+v (%s)", c.in, got, got, err, c.want, c.str)
		}
	}
	for _, bad := range []string{"", "30", "30/fortnight", "-1/min", "x/min", "30/", "/min", "2000000/s", "1.5/min"} {
		if got, err := ParseSendRate(bad); err == nil {
			t.Errorf("ParseSendRate(%q) = %+v, want an error", bad, got)
		}
	}
}

func TestSendRateFor(t *testing.T) {
	src := variant(t, "accounts:", "  - protocol: smtp\n    listen: 127.0.0.1:1587\n    upstream: smtp.example.com:587\n    send_rate: 10/min\n"+
		"  - protocol: smtp\n    listen: 127.0.0.1:1588\n    upstream: smtp.example.com:587\naccounts:")
	src += "  - login: fast\n    password_hash: " + testHash + "\n    identity: fast@contoso.com\n    provider: m365\n    send_rate: 0\n"
	src += "  - login: gmail\n    password_hash: " + testHash + "\n    identity: g@example.com\n    provider: gmail\n"
	src = strings.Replace(src, "providers:", "providers:\n  gmail:\n    type: google\n    client_id: g.apps.googleusercontent.com", 1)
	cfg, ps, _ := parseIn(t, src)
	if ps != nil {
		t.Fatalf("problems: %v", ps)
	}
	ten, def := &cfg.Servers[1], &cfg.Servers[2]
	cases := []struct {
		srv   *Server
		login string
		want  SendRate
	}{
		{ten, "erp-billing", SendRate{10, time.Minute}}, // the server's
		{def, "erp-billing", SendRate{30, time.Minute}}, // Microsoft's default
		{ten, "fast", SendRate{}},                       // the account's 0 wins
		{def, "gmail", SendRate{}},                      // Google: no per-minute default
	}
	for _, c := range cases {
		if got := cfg.SendRateFor(c.srv, cfg.Account(c.login)); got != c.want {
			t.Errorf("SendRateFor(%s, %s) = %v, want %v", c.srv.Listen, c.login, got, c.want)
		}
	}
}

func TestSendRateProblems(t *testing.T) {
	tests := []problemCase{
		{name: "bare number", src: variant(t, "    listen: 127.0.0.1:1143", "    listen: 127.0.0.1:1143\n    send_rate: 30"),
			path: "servers[0].send_rate", line: 10, msg: "expected a rate like 30/min"},
		{name: "imap server", src: variant(t, "    listen: 127.0.0.1:1143", "    listen: 127.0.0.1:1143\n    send_rate: 30/min"),
			path: "servers[0].send_rate", line: 10, msg: "smtp servers only"},
		{name: "account unit", src: variant(t, "    provider: m365", "    provider: m365\n    send_rate: 30/week"),
			path: "accounts[0].send_rate", line: 15, msg: `got "30/week"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { checkOneProblem(t, tc) })
	}
}

// FuzzParseSendRate: any text either fails or gives a rate whose String
// parses back to the same rate.
func FuzzParseSendRate(f *testing.F) {
	for _, s := range []string{"30/min", "5/s", "1000/hour", "0", "0/min", " 7 / Second ", "x", "1/", "-1/min", "99999999999/s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseSendRate(s)
		if err != nil {
			return
		}
		back, err := ParseSendRate(r.String())
		if err != nil || back != r {
			t.Fatalf("%q parsed to %+v, whose String %q parses to %+v, %v", s, r, r.String(), back, err)
		}
		if !r.Off() && (r.Messages <= 0 || r.Per <= 0) {
			t.Fatalf("%q: %+v is neither off nor a rate", s, r)
		}
	})
}
