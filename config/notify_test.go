package config

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNotifyDefaults(t *testing.T) {
	cfg, ps, _ := parseIn(t, validYAML)
	if ps != nil {
		t.Fatal(ps)
	}
	if got := cfg.Tokens.KeepaliveInterval(); got != 24*time.Hour {
		t.Errorf("default keepalive = %v, want 24h", got)
	}
	if got := time.Duration(cfg.Notify.Timeout); got != 10*time.Second {
		t.Errorf("default notify.timeout = %v, want 10s", got)
	}
	if cfg.Notify.Enabled() {
		t.Errorf("notify enabled without command or webhook: %+v", cfg.Notify)
	}
	var inCode Config
	if got := inCode.Tokens.KeepaliveInterval(); got != 24*time.Hour {
		t.Errorf("keepalive of a Config built in code = %v, want the default", got)
	}
}

func TestNotifyParsed(t *testing.T) {
	t.Setenv("XOAUTHD_TEST_HOOK", "https://hooks.example.com/services/T0/B0/hook-secret")
	for _, tc := range []struct {
		name, yaml string
		keepalive  time.Duration
		command    []string
		webhook    string
		timeout    time.Duration
	}{
		{name: "keepalive off", yaml: "tokens: {keepalive: 0}\n", keepalive: 0, timeout: 10 * time.Second},
		{name: "keepalive 0s", yaml: "tokens:\n  keepalive: 0s\n", keepalive: 0, timeout: 10 * time.Second},
		{name: "keepalive 12h", yaml: "tokens:\n  keepalive: 12h\n", keepalive: 12 * time.Hour, timeout: 10 * time.Second},
		{name: "empty tokens", yaml: "tokens: {}\n", keepalive: 24 * time.Hour, timeout: 10 * time.Second},
		{name: "command and webhook", keepalive: 24 * time.Hour,
			yaml:    "notify:\n  command: [/usr/local/bin/page-admin, --stdin]\n  webhook: https://hooks.example.com/xoauthd\n  timeout: 3s\n",
			command: []string{"/usr/local/bin/page-admin", "--stdin"}, webhook: "https://hooks.example.com/xoauthd", timeout: 3 * time.Second},
		{name: "webhook from env", keepalive: 24 * time.Hour, yaml: "notify: {webhook: \"${env:XOAUTHD_TEST_HOOK}\"}\n",
			webhook: "https://hooks.example.com/services/T0/B0/hook-secret", timeout: 10 * time.Second},
		{name: "loopback http", keepalive: 24 * time.Hour, yaml: "notify: {webhook: \"http://127.0.0.1:8080/hook\"}\n",
			webhook: "http://127.0.0.1:8080/hook", timeout: 10 * time.Second},
		{name: "localhost http", keepalive: 24 * time.Hour, yaml: "notify: {webhook: \"http://localhost/hook\"}\n",
			webhook: "http://localhost/hook", timeout: 10 * time.Second},
		{name: "ipv6 loopback http", keepalive: 24 * time.Hour, yaml: "notify: {webhook: \"http://[::1]:9/hook\"}\n",
			webhook: "http://[::1]:9/hook", timeout: 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, ps, _ := parseIn(t, validYAML+tc.yaml)
			if ps != nil {
				t.Fatal(ps)
			}
			n := cfg.Notify
			if got := cfg.Tokens.KeepaliveInterval(); got != tc.keepalive {
				t.Errorf("keepalive = %v, want %v", got, tc.keepalive)
			}
			if !slices.Equal(n.Command, tc.command) || n.Webhook.Reveal() != tc.webhook || time.Duration(n.Timeout) != tc.timeout {
				t.Errorf("notify = %#v / %q / %v", n.Command, n.Webhook.Reveal(), time.Duration(n.Timeout))
			}
			if n.Enabled() != (tc.webhook != "" || len(tc.command) > 0) {
				t.Errorf("Enabled() = %v", n.Enabled())
			}
		})
	}
}

func TestNotifyProblems(t *testing.T) {
	// validYAML has 14 lines: what is appended starts on line 15.
	for _, tc := range []problemCase{
		{name: "keepalive negative", src: validYAML + "tokens:\n  keepalive: -1h\n", path: "tokens.keepalive", line: 16, msg: "must not be negative; 0 turns the keep-alive off"},
		{name: "keepalive too short", src: validYAML + "tokens:\n  keepalive: 30s\n", path: "tokens.keepalive", line: 16, msg: "at least 1m0s"},
		{name: "keepalive too long", src: validYAML + "tokens:\n  keepalive: 2160h\n", path: "tokens.keepalive", line: 16, msg: "at most 720h0m0s"},
		{name: "keepalive without unit", src: validYAML + "tokens:\n  keepalive: 24\n", path: "tokens.keepalive", line: 16, msg: "duration like 30s"},
		{name: "unknown tokens key", src: validYAML + "tokens:\n  keep_alive: 24h\n", path: "tokens.keep_alive", line: 16, msg: `did you mean "keepalive"?`},
		{name: "empty command", src: validYAML + "notify:\n  command: []\n", path: "notify.command", line: 16, msg: "empty; list the program and its arguments"},
		{name: "empty program", src: validYAML + "notify:\n  command: [\"\", --stdin]\n", path: "notify.command[0]", line: 16, msg: "missing; the absolute path"},
		{name: "relative program", src: validYAML + "notify:\n  command: [page-admin]\n", path: "notify.command[0]", line: 16, msg: `"page-admin" is not an absolute path`},
		{name: "command line in one string", src: validYAML + "notify:\n  command: [\"/usr/local/bin/page-admin --stdin\"]\n", path: "notify.command[0]", line: 16, msg: "looks like a whole command line"},
		{name: "command not a list", src: validYAML + "notify:\n  command: /usr/local/bin/page-admin --stdin\n", path: "notify.command", line: 16, msg: "expected a list"},
		{name: "webhook http", src: validYAML + "notify:\n  timeout: 5s\n  webhook: http://hooks.example.com/xoauthd\n", path: "notify.webhook", line: 17, msg: "must use https; http is allowed only to localhost"},
		{name: "webhook not a url", src: validYAML + "notify:\n  webhook: hooks.example.com/xoauthd\n", path: "notify.webhook", line: 16, msg: "is not an absolute https URL"},
		{name: "webhook ftp", src: validYAML + "notify:\n  webhook: ftp://hooks.example.com/x\n", path: "notify.webhook", line: 16, msg: "is not an absolute https URL"},
		{name: "webhook bad escape", src: validYAML + "notify:\n  webhook: \"https://hooks.example.com/%zz\"\n", path: "notify.webhook", line: 16, msg: "is not an absolute https URL"},
		{name: "timeout negative", src: validYAML + "notify:\n  webhook: https://hooks.example.com/x\n  timeout: -1s\n", path: "notify.timeout", line: 17, msg: "must not be negative"},
		{name: "timeout too long", src: validYAML + "notify:\n  webhook: https://hooks.example.com/x\n  timeout: 1h\n", path: "notify.timeout", line: 17, msg: "at most 2m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) { checkOneProblem(t, tc) })
	}
}

// TestNotifyWebhookNeverShown: the webhook may hold a token (Slack and Teams
// hook URLs do), so no problem repeats it, and neither does printing.
func TestNotifyWebhookNeverShown(t *testing.T) {
	const secret = "T000/B000/hook-token-secret"
	for _, hook := range []string{
		"http://hooks.example.com/services/" + secret,
		"hooks.example.com/services/" + secret,
		"https://hooks.example.com/services/" + secret + "%zz",
	} {
		_, ps, _ := parseIn(t, validYAML+"notify:\n  webhook: \""+hook+"\"\n")
		if len(ps) != 1 {
			t.Fatalf("%s: got %v, want one problem", hook, ps)
		}
		if strings.Contains(ps.Error(), "hook-token-secret") {
			t.Errorf("problem shows the webhook: %s", ps.Error())
		}
	}
	cfg, ps, _ := parseIn(t, validYAML+"notify:\n  webhook: \"https://hooks.example.com/services/"+secret+"\"\n")
	if ps != nil {
		t.Fatal(ps)
	}
	if s := fmt.Sprintf("%v %+v", cfg.Notify.Webhook, cfg.Notify); strings.Contains(s, "hook-token-secret") {
		t.Errorf("printing notify shows the webhook: %s", s)
	}
}

// TestNotifyInCode: a Config built in code is validated the same way.
func TestNotifyInCode(t *testing.T) {
	cfg, ps, _ := parseIn(t, validYAML)
	if ps != nil {
		t.Fatal(ps)
	}
	short := Duration(time.Second)
	cfg.Tokens.Keepalive = &short
	cfg.Notify = Notify{Command: []string{"relative"}, Webhook: "http://example.com/x", Timeout: -1}
	var got []string
	for _, p := range cfg.Validate().(Problems) {
		got = append(got, p.Path)
	}
	want := []string{"tokens.keepalive", "notify.command[0]", "notify.webhook", "notify.timeout"}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("problems at %v, want %v", got, want)
	}
}

// TestExampleNotify: the commented-out notify section of the example is
// valid once enabled.
func TestExampleNotify(t *testing.T) {
	src, err := os.ReadFile("../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	for _, r := range []struct{ old, new string }{
		{"\n# notify:", "\nnotify:"},
		{"\n#   command:", "\n  command:"},
		{"\n#   webhook:", "\n  webhook:"},
		{"\n#   timeout:", "\n  timeout:"},
	} {
		if !strings.Contains(s, r.old) {
			t.Fatalf("config.example.yaml has no line starting %q", r.old[1:])
		}
		s = strings.Replace(s, r.old, r.new, 1)
	}
	cfg, err := Parse([]byte(s), "example.yaml")
	if err != nil {
		t.Fatalf("example with notify enabled: %v", err)
	}
	if !cfg.Notify.Enabled() || cfg.Notify.Command[0] != "/usr/local/bin/page-admin" || cfg.Tokens.KeepaliveInterval() != 24*time.Hour {
		t.Errorf("notify = %+v, keepalive %v", cfg.Notify, cfg.Tokens.KeepaliveInterval())
	}
}
