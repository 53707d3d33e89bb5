package notify

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestCommand: the command gets the alert as JSON on stdin and in XOAUTHD_*
// variables, and none of xoauthd's other environment.
func TestCommand(t *testing.T) {
	t.Setenv("M365_CLIENT_SECRET", "client-secret-value")
	t.Setenv("PATH", os.Getenv("PATH"))
	out := filepath.Join(t.TempDir(), "out.json")
	r := newRig(t, Hooks{Command: helperCommand(t, "record", out)}, nil)
	a := sample("billing@contoso.com")
	r.n.Report(a)
	r.delivered(t, HookCommand, DeliverySuccess)

	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rec recorded
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatal(err)
	}
	checkAlertJSON(t, "the command's stdin", []byte(rec.Stdin), a)
	for _, kv := range []string{
		"XOAUTHD_IDENTITY=billing@contoso.com", "XOAUTHD_CAUSE=refresh token expired", "XOAUTHD_FIX=" + a.Fix,
		"XOAUTHD_CODE=AADSTS700082", "XOAUTHD_KIND=needs_login", "XOAUTHD_COMMAND=" + a.Command, "XOAUTHD_HOST=erp-host",
		"XOAUTHD_TIME=2025-03-01T08:30:00Z", "PATH=" + os.Getenv("PATH"),
	} {
		if !slices.Contains(rec.Env, kv) {
			t.Errorf("environment lacks %s: %v", kv, rec.Env)
		}
	}
	for _, kv := range rec.Env {
		if strings.Contains(kv, "client-secret-value") || strings.HasPrefix(kv, "M365_CLIENT_SECRET=") {
			t.Errorf("the command inherited %s", kv)
		}
	}
	if !strings.Contains(r.log.String(), `msg="alert delivered" hook=command`) {
		t.Errorf("no delivery line:\n%s", r.log)
	}
}

func TestCommandFails(t *testing.T) {
	for _, tc := range []struct {
		name    string
		command []string
		timeout time.Duration
		want    []string
	}{
		{name: "exit status", command: helperCommand(t, "fail"),
			want: []string{"exit status 3", "its output: paging failed: no route to the pager"}},
		{name: "hangs", command: helperCommand(t, "hang"), timeout: 200 * time.Millisecond,
			want: []string{"killed after the timeout of 200ms", "raise notify.timeout"}},
		{name: "missing program", command: []string{filepath.Join(t.TempDir(), "no-such-program")},
			want: []string{"no-such-program"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, Hooks{Command: tc.command, Timeout: tc.timeout}, nil)
			r.n.Report(sample("billing@contoso.com"))
			r.delivered(t, HookCommand, DeliveryFailure)
			log := r.log.String()
			if !strings.Contains(log, `msg="alert delivery failed" hook=command identity=billing@contoso.com`) {
				t.Errorf("no failure line:\n%s", log)
			}
			for _, w := range tc.want {
				if !strings.Contains(log, w) {
					t.Errorf("log lacks %q:\n%s", w, log)
				}
			}
		})
	}
}

func TestCappedBuffer(t *testing.T) {
	b := &cappedBuffer{max: 8}
	b.Write([]byte("abc  \n def"))
	b.Write([]byte("ghijkl"))
	if got := b.text(); got != "abc d ..." {
		t.Errorf("text() = %q", got)
	}
	b = &cappedBuffer{max: 8}
	b.Write([]byte("a\xffb"))
	if got := b.text(); got != "a?b" {
		t.Errorf("text() = %q", got)
	}
}
