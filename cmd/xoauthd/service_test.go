package main

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/xoauthd/xoauthd/config"
)

func TestServiceUsage(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"service"}, "missing action"},
		{[]string{"service", "restart"}, `unknown action "restart"`},
		{[]string{"service", "start", "now"}, `unexpected argument "now"`},
		{[]string{"service", "install", "--bogus"}, "flag provided but not defined: -bogus"},
	}
	for _, tt := range tests {
		code, out, errOut := runIn(t, "", tt.args...)
		if code != exitUsage || out != "" || !strings.Contains(errOut, tt.want) || !strings.Contains(errOut, "Usage: xoauthd service") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 2 and %q with the usage", tt.args, code, out, errOut, tt.want)
		}
	}
}

func TestServiceNotWindows(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the Windows service manager answers here")
	}
	for _, action := range serviceActions {
		code, out, errOut := runIn(t, "", "service", action, "--config", "x.yaml")
		if code != exitUsage || out != "" || !strings.Contains(errOut, "Windows only") || !strings.Contains(errOut, "systemd") {
			t.Errorf("service %s: exit %d, stdout %q, stderr %q; want 2 and a pointer to systemd", action, code, out, errOut)
		}
	}
}

// Regression: service install restricted %ProgramData%\xoauthd but asked
// the user to restrict its state subdirectory, which inherits the ACL.
func TestInsideDir(t *testing.T) {
	const home = `C:\ProgramData\xoauthd`
	tests := []struct {
		dir  string
		want bool
	}{
		{home, true},
		{`C:\ProgramData\xoauthd\`, true},
		{`c:\programdata\XOAUTHD`, true},
		{`C:\ProgramData\xoauthd\state`, true},
		{`C:/ProgramData/xoauthd/state/deeper`, true},
		{`C:\ProgramData\xoauthd-old`, false},
		{`C:\ProgramData`, false},
		{`D:\xoauthd`, false},
	}
	for _, tt := range tests {
		if got := insideDir(tt.dir, home); got != tt.want {
			t.Errorf("insideDir(%q, %q) = %v, want %v", tt.dir, home, got, tt.want)
		}
	}
}

// supervised records what superviseService reports.
type supervised struct {
	states chan serviceState
}

func (s *supervised) report(st serviceState) { s.states <- st }

// next returns the next reported state.
func (s *supervised) next(t *testing.T) serviceState {
	t.Helper()
	return <-s.states
}

// request is a fake service manager request.
type request string

func classifyRequest(r request) serviceControl {
	switch r {
	case "stop", "shutdown":
		return controlStop
	case "interrogate":
		return controlInterrogate
	default:
		return controlIgnore
	}
}

func TestSuperviseServiceStop(t *testing.T) {
	for _, stop := range []request{"stop", "shutdown"} {
		t.Run(string(stop), func(t *testing.T) {
			s := &supervised{states: make(chan serviceState, 16)}
			requests := make(chan request)
			draining := make(chan struct{})
			release := make(chan struct{})
			serve := func(ctx context.Context, started func()) int {
				started()
				<-ctx.Done()
				close(draining)
				<-release // still draining while more requests arrive
				return 7
			}
			result := make(chan int, 1)
			go func() { result <- superviseService(context.Background(), requests, classifyRequest, s.report, serve) }()
			if got := []serviceState{s.next(t), s.next(t)}; !slices.Equal(got, []serviceState{serviceStarting, serviceRunning}) {
				t.Fatalf("reported %v, want starting, running", got)
			}
			requests <- "interrogate"
			if got := s.next(t); got != serviceRunning {
				t.Errorf("interrogate while running reported %v", got)
			}
			requests <- "pause" // not accepted: no report, no effect
			requests <- stop
			<-draining
			if got := s.next(t); got != serviceStopping {
				t.Errorf("after %s reported %v, want stopping", stop, got)
			}
			requests <- stop // a second stop changes nothing
			requests <- "interrogate"
			if got := s.next(t); got != serviceStopping {
				t.Errorf("interrogate while draining reported %v, want stopping", got)
			}
			close(release)
			if code := <-result; code != 7 {
				t.Errorf("exit status %d, want serve's 7", code)
			}
			if len(s.states) != 0 {
				t.Errorf("%d extra reports", len(s.states))
			}
		})
	}
}

func TestSuperviseServiceServeEnds(t *testing.T) {
	s := &supervised{states: make(chan serviceState, 16)}
	requests := make(chan request) // never sent on
	// serve ends on its own, like a daemon whose listener cannot start.
	serve := func(context.Context, func()) int { return exitFailure }
	if code := superviseService(context.Background(), requests, classifyRequest, s.report, serve); code != exitFailure {
		t.Errorf("exit status %d, want %d", code, exitFailure)
	}
	// Never running: "service start" sees the service stop while starting.
	if got := s.next(t); got != serviceStarting || len(s.states) != 0 {
		t.Errorf("reported %v and %d more, want only starting", got, len(s.states))
	}
}

// Regression: running was reported as soon as serve was launched, before
// the configuration was loaded and the listeners were up, so "service
// start" returned while nothing listened yet (seen under Wine).
func TestSuperviseServiceRunningOnceStarted(t *testing.T) {
	s := &supervised{states: make(chan serviceState, 16)}
	requests := make(chan request)
	listening := make(chan func())
	serve := func(ctx context.Context, started func()) int {
		listening <- started // the test decides when the listeners are up
		<-ctx.Done()
		return exitOK
	}
	result := make(chan int, 1)
	go func() { result <- superviseService(context.Background(), requests, classifyRequest, s.report, serve) }()
	if got := s.next(t); got != serviceStarting {
		t.Fatalf("first report %v, want starting", got)
	}
	started := <-listening
	requests <- "interrogate"
	if got := s.next(t); got != serviceStarting {
		t.Errorf("interrogate before the listeners are up reported %v, want starting", got)
	}
	started()
	started() // a second call changes nothing
	if got := s.next(t); got != serviceRunning {
		t.Errorf("after started reported %v, want running", got)
	}
	requests <- "stop"
	if got := s.next(t); got != serviceStopping {
		t.Errorf("after stop reported %v, want stopping", got)
	}
	if code := <-result; code != exitOK || len(s.states) != 0 {
		t.Errorf("exit status %d with %d extra reports", code, len(s.states))
	}
}

func TestSuperviseServiceClosedRequests(t *testing.T) {
	s := &supervised{states: make(chan serviceState, 16)}
	requests := make(chan request)
	close(requests)
	serve := func(ctx context.Context, started func()) int { started(); <-ctx.Done(); return exitOK }
	if code := superviseService(context.Background(), requests, classifyRequest, s.report, serve); code != exitOK {
		t.Errorf("exit status %d", code)
	}
	// The stop may come before or after the listeners are up.
	var got []serviceState
	for len(s.states) > 0 {
		got = append(got, s.next(t))
	}
	if !slices.Equal(got, []serviceState{serviceStarting, serviceRunning, serviceStopping}) &&
		!slices.Equal(got, []serviceState{serviceStarting, serviceStopping}) {
		t.Errorf("reported %v, want starting, (running,) stopping", got)
	}
}

func TestSuperviseServiceParentCancelled(t *testing.T) {
	s := &supervised{states: make(chan serviceState, 16)}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	serve := func(ctx context.Context, _ func()) int { <-ctx.Done(); return exitOK }
	if code := superviseService(ctx, make(chan request), classifyRequest, s.report, serve); code != exitOK {
		t.Errorf("exit status %d", code)
	}
}

// record is one message that reached a logSink.
type record struct {
	level slog.Level
	msg   string
}

func TestSinkLogger(t *testing.T) {
	var got []record
	sink := func(level slog.Level, msg string) error {
		got = append(got, record{level, msg})
		return nil
	}
	log := newSinkLogger(config.Log{Level: "info", Format: "text"}, sink)
	log.Debug("hidden")
	log.Info("started", "version", "v1")
	log.With("cid", 7).WithGroup("up").Warn("slow upstream", "ms", 900)
	log.Error("listener failed", "err", errors.New("address in use"))
	want := []struct {
		level slog.Level
		parts []string
	}{
		{slog.LevelInfo, []string{"level=INFO", "msg=started", "version=v1"}},
		{slog.LevelWarn, []string{"level=WARN", `msg="slow upstream"`, "cid=7", "up.ms=900"}},
		{slog.LevelError, []string{"level=ERROR", `err="address in use"`}},
	}
	if len(got) != len(want) {
		t.Fatalf("sink got %d records, want %d: %v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i].level != w.level || strings.Contains(got[i].msg, "\n") {
			t.Errorf("record %d = %v %q, want level %v on one line", i, got[i].level, got[i].msg, w.level)
		}
		for _, p := range w.parts {
			if !strings.Contains(got[i].msg, p) {
				t.Errorf("record %d = %q, want %q", i, got[i].msg, p)
			}
		}
	}
}

func TestSinkLoggerJSONAndLevel(t *testing.T) {
	var got []record
	log := newSinkLogger(config.Log{Level: "warn", Format: "json"}, func(level slog.Level, msg string) error {
		got = append(got, record{level, msg})
		return nil
	})
	log.Info("not at warn")
	log.Warn("needs a new login", "identity", "a@b.example")
	if len(got) != 1 || !strings.HasPrefix(got[0].msg, "{") || !strings.Contains(got[0].msg, `"identity":"a@b.example"`) {
		t.Errorf("got %v, want one JSON record", got)
	}
}

func TestSinkWriter(t *testing.T) {
	var got []record
	fail := errors.New("event log full")
	w := sinkWriter{level: slog.LevelError, sink: func(level slog.Level, msg string) error {
		if msg == "fail" {
			return fail
		}
		got = append(got, record{level, msg})
		return nil
	}}
	line := "xoauthd serve: listening on 127.0.0.1:1143: address in use"
	if n, err := w.Write([]byte(line + "\r\n")); n != len(line)+2 || err != nil {
		t.Errorf("Write = %d, %v", n, err)
	}
	if n, err := w.Write([]byte("\n")); n != 1 || err != nil {
		t.Errorf("Write of an empty line = %d, %v", n, err)
	}
	if _, err := w.Write([]byte("fail")); !errors.Is(err, fail) {
		t.Errorf("Write = %v, want the sink's error", err)
	}
	if len(got) != 1 || got[0].level != slog.LevelError || got[0].msg != line {
		t.Errorf("sink got %v", got)
	}
}
