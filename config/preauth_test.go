package config

import (
	"testing"
	"time"
)

func TestPreAuthTimeout(t *testing.T) {
	cfg, _, _ := parseIn(t, validYAML)
	if got := time.Duration(cfg.Servers[0].PreAuthTimeout); got != time.Minute {
		t.Errorf("default preauth_timeout = %v, want 1m", got)
	}
	cfg, _, _ = parseIn(t, variant(t, "listen: 127.0.0.1:1143", "listen: 127.0.0.1:1143\n    preauth_timeout: 15s"))
	if got := time.Duration(cfg.Servers[0].PreAuthTimeout); got != 15*time.Second {
		t.Errorf("preauth_timeout: 15s read as %v", got)
	}
	for _, tc := range []problemCase{
		{name: "negative", src: variant(t, "listen: 127.0.0.1:1143", "listen: 127.0.0.1:1143\n    preauth_timeout: -1s"),
			path: "servers[0].preauth_timeout", line: 10, msg: "must not be negative"},
		{name: "too long", src: variant(t, "listen: 127.0.0.1:1143", "listen: 127.0.0.1:1143\n    preauth_timeout: 2h"),
			path: "servers[0].preauth_timeout", line: 10, msg: "must be at most 10m0s"},
		{name: "no unit", src: variant(t, "listen: 127.0.0.1:1143", "listen: 127.0.0.1:1143\n    preauth_timeout: 30"),
			path: "servers[0].preauth_timeout", line: 10, msg: "duration like 30s"},
	} {
		t.Run(tc.name, func(t *testing.T) { checkOneProblem(t, tc) })
	}
}

// TestNoInsecureSkipVerify pins that TLS to the upstream cannot be turned
// off: there is no key for it anywhere, so the strict decoder refuses one.
func TestNoInsecureSkipVerify(t *testing.T) {
	for _, tc := range []problemCase{
		{name: "server", src: variant(t, "listen: 127.0.0.1:1143", "listen: 127.0.0.1:1143\n    insecure_skip_verify: true"),
			path: "servers[0].insecure_skip_verify", line: 10, msg: "unknown"},
		{name: "server tls", src: variant(t, "listen: 127.0.0.1:1143", "listen: 127.0.0.1:1143\n    tls: {cert: c.pem, key: k.pem, insecure_skip_verify: true}"),
			path: "servers[0].tls.insecure_skip_verify", line: 10, msg: "unknown"},
		{name: "provider", src: variant(t, "    type: microsoft", "    type: microsoft\n    insecure_skip_verify: true"),
			path: "providers.m365.insecure_skip_verify", line: 6, msg: "unknown"},
		{name: "top level", src: "insecure_skip_verify: true\n" + validYAML,
			path: "insecure_skip_verify", line: 1, msg: "unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) { checkOneProblem(t, tc) })
	}
}
