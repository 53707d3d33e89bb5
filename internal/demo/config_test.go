package demo

import (
	"net"
	"testing"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/passhash"
)

// TestWriteConfigOffLoopback: on all interfaces the demo's plaintext
// listeners are allowed explicitly, so the configuration validates; on
// loopback nothing extra is written.
func TestWriteConfigOffLoopback(t *testing.T) {
	hash, err := passhash.Hash(Password)
	if err != nil {
		t.Fatal(err)
	}
	up := upstreams{imap: "127.0.0.1:1", pop3: "127.0.0.1:2", smtp: "127.0.0.1:3", authority: "http://127.0.0.1:4", tenant: "contoso.onmicrosoft.com"}
	ls := []Listener{{Protocol: config.ProtoIMAP}, {Protocol: config.ProtoPOP3}, {Protocol: config.ProtoSMTP}}
	for _, tc := range []struct {
		host  string
		plain bool
	}{{"0.0.0.0", true}, {"127.0.0.1", false}} {
		dir := t.TempDir()
		cfg, err := writeConfig(dir, up, ls, plan(tc.host, ls, true), hash, consoleConf{listen: net.JoinHostPort(tc.host, "0"), passwordHash: hash})
		if err != nil {
			t.Fatalf("host %s: %v", tc.host, err)
		}
		for _, s := range cfg.Servers {
			if s.AllowPlaintext != tc.plain {
				t.Errorf("host %s: %s allow_plaintext = %v, want %v", tc.host, s.Protocol, s.AllowPlaintext, tc.plain)
			}
		}
	}
}
