package demo

import (
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/config"
)

// fakeEnv is an Env with only what WriteInstructions reads.
func fakeEnv(host string, addrs ...string) *Env {
	e := &Env{host: host, cfg: &config.Config{Path: "/tmp/x/xoauthd.yaml"}}
	for i, p := range []string{config.ProtoIMAP, config.ProtoPOP3, config.ProtoSMTP} {
		e.listeners = append(e.listeners, Listener{Protocol: p, Addr: addrs[i]})
	}
	return e
}

func TestInstructionsForHosts(t *testing.T) {
	tests := []struct {
		name    string
		env     *Env
		want    []string
		notWant []string
	}{
		{"all interfaces", fakeEnv("0.0.0.0", "0.0.0.0:1143", "0.0.0.0:1110", "0.0.0.0:1587"),
			[]string{"curl imap://127.0.0.1:1143/ -u demo:demo\n", "  SMTP       127.0.0.1:1587 ", "Warning: listening on 0.0.0.0"},
			[]string{" -g"}},
		{"ipv6 loopback", fakeEnv("::1", "[::1]:1143", "[::1]:1110", "[::1]:1587"),
			[]string{"curl pop3://[::1]:1110/1 -u demo:demo -g\n", "-T message.txt -g\n"},
			[]string{"Warning"}},
		{"ipv6 any", fakeEnv("::", "[::]:1143", "[::]:1110", "[::]:1587"),
			[]string{"curl imap://127.0.0.1:1143/ -u demo:demo\n", "Warning: listening on ::"},
			nil},
		{"localhost", fakeEnv("localhost", "127.0.0.1:1143", "127.0.0.1:1110", "127.0.0.1:1587"),
			[]string{"curl imap://127.0.0.1:1143/ -u demo:demo\n"},
			[]string{"Warning", "is in use"}},
	}
	for _, tt := range tests {
		var b strings.Builder
		if err := tt.env.WriteInstructions(&b); err != nil {
			t.Fatal(err)
		}
		for _, w := range tt.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%s: instructions lack %q:\n%s", tt.name, w, b.String())
			}
		}
		for _, w := range tt.notWant {
			if strings.Contains(b.String(), w) {
				t.Errorf("%s: instructions have %q:\n%s", tt.name, w, b.String())
			}
		}
	}
}

func TestListenerMoved(t *testing.T) {
	tests := []struct {
		l    Listener
		want bool
	}{
		{Listener{Wanted: 1143, Addr: "127.0.0.1:1143"}, false},
		{Listener{Wanted: 1143, Addr: "127.0.0.1:40000"}, true},
		{Listener{Wanted: 0, Addr: "127.0.0.1:40000"}, false},
		{Listener{Wanted: 1143, Addr: ""}, false}, // not started
	}
	for _, tt := range tests {
		if got := tt.l.Moved(); got != tt.want {
			t.Errorf("%+v.Moved() = %v, want %v", tt.l, got, tt.want)
		}
	}
}

var fixedTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestWelcomeMessage(t *testing.T) {
	msg := string(welcomeMessage(fixedTime))
	if !strings.HasPrefix(msg, "From: ") || !strings.Contains(msg, "\r\nSubject: Welcome to the xoauthd demo\r\n") ||
		!strings.Contains(msg, "\r\n\r\nYou are reading this through xoauthd.\r\n") {
		t.Errorf("welcome message = %q", msg)
	}
	if strings.Contains(strings.ReplaceAll(msg, "\r\n", ""), "\n") {
		t.Error("welcome message has a bare LF")
	}
}
