package config

import (
	"net/url"
	"path/filepath"
	"strings"
	"time"
)

// Defaults and bounds of tokens: and notify:.
const (
	// DefaultKeepalive refreshes an identity once a day when nothing else
	// uses it.
	DefaultKeepalive = Duration(24 * time.Hour)
	// MinKeepalive: a shorter interval would only load the identity
	// provider (each idle identity is refreshed once per interval).
	MinKeepalive = Duration(time.Minute)
	// MaxKeepalive leaves a refresh token that dies after 90 unused days
	// (Microsoft) time for several attempts when one fails.
	MaxKeepalive = Duration(30 * 24 * time.Hour)
	// DefaultNotifyTimeout bounds one command run or webhook request.
	DefaultNotifyTimeout = Duration(10 * time.Second)
	// MaxNotifyTimeout: a hook slower than this is broken, not slow.
	MaxNotifyTimeout = Duration(2 * time.Minute)
)

// KeepaliveInterval returns tokens.keepalive: how long a refresh token may go
// unused before it is refreshed in the background; 0 means off. An unset
// value (a Config built in code without ApplyDefaults) is DefaultKeepalive.
func (t Tokens) KeepaliveInterval() time.Duration {
	if t.Keepalive == nil {
		return time.Duration(DefaultKeepalive)
	}
	return max(time.Duration(*t.Keepalive), 0)
}

// Enabled reports whether notify: names a command or a webhook.
func (n Notify) Enabled() bool { return len(n.Command) > 0 || n.Webhook != "" }

// applyNotifyDefaults fills tokens.keepalive and notify.timeout.
func (c *Config) applyNotifyDefaults() {
	if c.Tokens.Keepalive == nil {
		d := DefaultKeepalive
		c.Tokens.Keepalive = &d
	}
	if c.Notify.Timeout == 0 {
		c.Notify.Timeout = DefaultNotifyTimeout
	}
}

// notify checks tokens: and notify:. The webhook is a secret: messages
// never repeat it.
func (k *checker) notify() {
	if p := k.c.Tokens.Keepalive; p != nil {
		switch d := *p; {
		case d < 0:
			k.addf("tokens.keepalive", "must not be negative; 0 turns the keep-alive off")
		case d > 0 && d < MinKeepalive:
			k.addf("tokens.keepalive", "must be 0 (off) or at least %s: each idle identity is refreshed once per interval", time.Duration(MinKeepalive))
		case d > MaxKeepalive:
			k.addf("tokens.keepalive", "must be at most %s: Microsoft drops a refresh token unused for 90 days, and a failed keep-alive needs time for another try", time.Duration(MaxKeepalive))
		}
	}
	n := k.c.Notify
	if n.Command != nil {
		k.notifyCommand(n.Command)
	}
	if n.Webhook != "" {
		if msg := checkWebhook(n.Webhook.Reveal()); msg != "" {
			k.addf("notify.webhook", "%s", msg)
		}
	}
	switch {
	case n.Timeout < 0:
		k.addf("notify.timeout", "must not be negative")
	case n.Timeout > MaxNotifyTimeout:
		k.addf("notify.timeout", "must be at most %s; a hook that takes longer is broken", time.Duration(MaxNotifyTimeout))
	}
}

// notifyCommand checks notify.command: a program given by absolute path (no
// shell and no PATH lookup), then its arguments.
func (k *checker) notifyCommand(argv []string) {
	const example = "[/usr/local/bin/page-admin, --stdin]"
	switch {
	case len(argv) == 0:
		k.addf("notify.command", "empty; list the program and its arguments, like %s, or remove the key", example)
	case argv[0] == "":
		k.addf("notify.command[0]", "missing; the absolute path of the program to run")
	case !filepath.IsAbs(argv[0]):
		k.addf("notify.command[0]", "%s is not an absolute path; write the program's full path, like /usr/local/bin/page-admin (no shell and no PATH lookup is used)", quoteShort(argv[0]))
	case len(argv) == 1 && strings.Contains(argv[0], " -"):
		k.addf("notify.command[0]", "%s looks like a whole command line; no shell is used, so list the program and each argument separately, like %s", quoteShort(argv[0]), example)
	}
}

// checkWebhook requires an absolute https URL, or http to a loopback host.
// It returns "" when raw is fine; the message never contains raw.
func checkWebhook(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return "is not an absolute https URL like https://hooks.example.com/xoauthd (the value is not shown: it may hold a token)"
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return "must use https; http is allowed only to localhost, 127.0.0.1 or ::1"
	}
	return ""
}
