package notify

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/testkit"
)

// waitFor bounds every wait of these tests.
const waitFor = 10 * time.Second

// helperArg, as the first argument of the test binary, makes it the
// command of a notify hook instead of running the tests (see TestMain).
const helperArg = "notify-test-helper"

// TestMain lets the test binary play the notify command:
//
//	notify.test notify-test-helper record FILE   stdin and environment to FILE, as JSON
//	notify.test notify-test-helper fail          prints a complaint, exits 3
//	notify.test notify-test-helper hang          sleeps until killed
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == helperArg {
		os.Exit(helper(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// recorded is what the helper writes in record mode.
type recorded struct {
	Stdin string   `json:"stdin"`
	Env   []string `json:"env"`
}

func helper(args []string) int {
	switch args[0] {
	case "record":
		in, err := io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		out, _ := json.Marshal(recorded{Stdin: string(in), Env: os.Environ()})
		tmp := args[1] + ".tmp"
		if err := os.WriteFile(tmp, out, 0o600); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := os.Rename(tmp, args[1]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	case "fail":
		fmt.Fprintln(os.Stderr, "paging failed:\n  no route to the pager")
		return 3
	case "hang":
		time.Sleep(time.Hour)
		return 0
	}
	return 2
}

// helperCommand is the hook command that runs the helper in mode.
func helperCommand(t *testing.T, mode ...string) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{exe, helperArg}, mode...)
}

// logBuf is a goroutine-safe log sink.
type logBuf struct{ testkit.SyncBuffer }

// count returns how many lines contain s.
func (l *logBuf) count(s string) int {
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// delivery is one OnDelivery call.
type delivery struct{ hook, result string }

// rig is a Notifier with its log and seams on channels.
type rig struct {
	n          *Notifier
	log        *logBuf
	alerts     chan Alert
	deliveries chan delivery
}

// newRig returns a Notifier with hooks h; edit may change its options.
func newRig(t *testing.T, h Hooks, edit func(*Options)) *rig {
	t.Helper()
	r := &rig{log: &logBuf{}, alerts: make(chan Alert, 100), deliveries: make(chan delivery, 100)}
	opts := Options{
		Log:        slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Hooks:      func() Hooks { return h },
		Host:       "erp-host",
		Now:        func() time.Time { return time.Date(2025, 3, 1, 8, 30, 0, 0, time.UTC) },
		OnAlert:    func(a Alert) { r.alerts <- a },
		OnDelivery: func(hook, result string) { r.deliveries <- delivery{hook, result} },
		RetryWait:  time.Millisecond,
	}
	if edit != nil {
		edit(&opts)
	}
	r.n = New(opts)
	t.Cleanup(func() { r.n.Close(t.Context()) })
	return r
}

// delivered waits for the next delivery and checks it.
func (r *rig) delivered(t *testing.T, hook, result string) {
	t.Helper()
	select {
	case d := <-r.deliveries:
		if d.hook != hook || d.result != result {
			t.Fatalf("delivery %s %s, want %s %s; log:\n%s", d.hook, d.result, hook, result, r.log)
		}
	case <-time.After(waitFor):
		t.Fatalf("no %s delivery; log:\n%s", hook, r.log)
	}
}

// checkAlertJSON fails t unless raw (what hook received) is a JSON object
// with exactly the fields of the needs-login alert a, raised at
// 2025-03-01T08:30:00Z on erp-host.
func checkAlertJSON(t *testing.T, hook string, raw []byte, a Alert) {
	t.Helper()
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("%s got %q, not a JSON object: %v", hook, raw, err)
	}
	want := map[string]any{
		"identity": a.Identity, "kind": "needs_login", "cause": a.Cause, "code": a.Code, "fix": a.Fix,
		"command": a.Command, "time": "2025-03-01T08:30:00Z", "host": "erp-host",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s = %v, want %v", hook, k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s got keys %v, want exactly %v", hook, got, want)
	}
}

// sample is a needs-login alert as the daemon raises it.
func sample(identity string) Alert {
	return Alert{
		Identity: identity, Kind: KindNeedsLogin, Code: "AADSTS700082",
		Cause:   "refresh token expired",
		Fix:     `run "xoauthd login ` + identity + `"`,
		Command: "xoauthd login --config /etc/xoauthd/xoauthd.yaml " + identity,
	}
}
