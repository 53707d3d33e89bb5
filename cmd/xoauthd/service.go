package main

// This file holds the platform-neutral part of "xoauthd service": argument
// parsing, the loop that runs serve for a service manager, and a slog
// handler for a system log. service_windows.go binds them to the Windows
// service manager and event log; service_other.go says the command is
// Windows-only.

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/xoauthd/xoauthd/config"
)

// serviceActions are the words "xoauthd service" takes; "run" is what the
// service manager starts, not something to type.
var serviceActions = []string{"install", "uninstall", "start", "stop", "run"}

// parseService parses "service ACTION [--config FILE]". defaultConfig is
// the platform's configuration path for the service. ok false carries the
// exit status to return.
func parseService(inv *invocation, defaultConfig string) (action, configPath string, code int, ok bool) {
	fs := inv.flagSet("install|uninstall|start|stop [--config FILE]")
	path := fs.String("config", defaultConfig, "configuration `FILE` the service runs with (install, run)")
	pos, code, ok := inv.parse(fs)
	if !ok {
		return "", "", code, false
	}
	switch {
	case len(pos) == 0:
		return "", "", inv.usageError(fs, "missing action: install, uninstall, start or stop"), false
	case len(pos) > 1:
		return "", "", inv.usageError(fs, "unexpected argument %q", pos[1]), false
	case !slices.Contains(serviceActions, pos[0]):
		return "", "", inv.usageError(fs, "unknown action %q; use install, uninstall, start or stop", pos[0]), false
	}
	return pos[0], *path, exitOK, true
}

// serviceControl is what a service manager asks of a running service,
// reduced to what the service does about it.
type serviceControl int

const (
	controlIgnore      serviceControl = iota // not accepted: nothing to do
	controlInterrogate                       // report the current state again
	controlStop                              // drain and stop, like SIGTERM
)

// serviceState is the state reported to the service manager.
type serviceState int

const (
	serviceStarting serviceState = iota
	serviceRunning
	serviceStopping
)

// superviseService runs serve for a service manager: it reports starting,
// then running once serve calls started (its listeners are up), answers
// interrogations, and on the first stop request reports stopping and
// cancels serve's context, which drains sessions the way SIGTERM does. It
// returns serve's exit status, also when serve ends on its own (a
// configuration that does not load, a listener that cannot start). A
// closed requests channel counts as a stop request.
func superviseService[R any](ctx context.Context, requests <-chan R, classify func(R) serviceControl,
	report func(serviceState), serve func(ctx context.Context, started func()) int) int {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	state := serviceStarting
	report(state)
	done := make(chan int, 1)
	up := make(chan struct{})
	var once sync.Once
	go func() { done <- serve(ctx, func() { once.Do(func() { close(up) }) }) }()
	for {
		select {
		case code := <-done:
			return code
		case <-up:
			up = nil
			if state == serviceStarting {
				state = serviceRunning
				report(state)
			}
		case req, open := <-requests:
			ctl := controlStop
			if open {
				ctl = classify(req)
			} else {
				requests = nil
			}
			switch {
			case ctl == controlInterrogate:
				report(state)
			case ctl == controlStop && state != serviceStopping:
				state = serviceStopping
				report(state)
				cancel()
			}
		}
	}
}

// insideDir reports whether dir is root or below it, comparing Windows
// paths as Windows does: without regard to case, with \ or / between
// names.
func insideDir(dir, root string) bool {
	norm := func(p string) string {
		return strings.TrimRight(strings.ToLower(strings.ReplaceAll(p, `/`, `\`)), `\`)
	}
	dir, root = norm(dir), norm(root)
	return dir == root || strings.HasPrefix(dir, root+`\`)
}

// logSink receives one formatted log record with its level.
type logSink func(level slog.Level, msg string) error

// recordBuffer collects the output of one record of the wrapped handler.
type recordBuffer struct {
	mu  sync.Mutex // held by sinkHandler.Handle around a record
	buf bytes.Buffer
}

// Write appends to the record being formatted; the caller holds mu.
func (b *recordBuffer) Write(p []byte) (int, error) { return b.buf.Write(p) }

// sinkHandler formats records with a handler from newLogger (so level and
// format follow the log section) and hands each one, with its level, to a
// sink such as the Windows event log.
type sinkHandler struct {
	inner slog.Handler // writes into out
	out   *recordBuffer
	sink  logSink
}

// newSinkLogger returns a logger for the log section of the configuration
// whose records go to sink, one call per record.
func newSinkLogger(c config.Log, sink logSink) *slog.Logger {
	out := &recordBuffer{}
	return slog.New(&sinkHandler{inner: newLogger(c, out).Handler(), out: out, sink: sink})
}

// Enabled reports whether the configured level lets records at level pass.
func (h *sinkHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

// Handle formats r and passes it to the sink.
func (h *sinkHandler) Handle(ctx context.Context, r slog.Record) error {
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	h.out.buf.Reset()
	if err := h.inner.Handle(ctx, r); err != nil {
		return err
	}
	return h.sink(r.Level, strings.TrimSuffix(h.out.buf.String(), "\n"))
}

// WithAttrs returns a handler whose records carry attrs.
func (h *sinkHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &sinkHandler{inner: h.inner.WithAttrs(attrs), out: h.out, sink: h.sink}
}

// WithGroup returns a handler that puts later attributes in group name.
func (h *sinkHandler) WithGroup(name string) slog.Handler {
	return &sinkHandler{inner: h.inner.WithGroup(name), out: h.out, sink: h.sink}
}

// sinkWriter passes each Write to sink as one message at level, for output
// that would otherwise go to a console nobody sees.
type sinkWriter struct {
	level slog.Level
	sink  logSink
}

// Write sends p, without its trailing newline, to the sink.
func (w sinkWriter) Write(p []byte) (int, error) {
	if msg := strings.TrimRight(string(p), "\r\n"); msg != "" {
		if err := w.sink(w.level, msg); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}
