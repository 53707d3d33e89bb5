package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/check"
	"github.com/xoauthd/xoauthd/internal/daemon"
)

// Stopping. IMAP and POP3 sessions and SMTP sessions without a message under
// way end at once; only SMTP messages under way use the drain time.
const (
	// defaultDrain is how long SMTP messages under way may finish after
	// SIGTERM/SIGINT: with exitSlack it stays inside the 10 s that
	// "docker stop" waits before SIGKILL, and far inside Kubernetes' 30 s.
	defaultDrain = 8 * time.Second
	// exitSlack bounds the wait, after the drain time, for the sessions
	// closed then to return; serve exits when it is up in any case.
	exitSlack = time.Second
)

// runServe runs the listeners of the configuration until SIGTERM or SIGINT,
// then stops accepting, ends sessions (SMTP messages under way may finish
// within the drain time) and exits 0. A second signal exits at once
// (stopOnSignals). The configuration is reloaded when its file changes and
// on SIGHUP.
func runServe(ctx context.Context, inv *invocation) int {
	fs := inv.flagSet("[--config FILE] [--drain DURATION] [--trace]")
	path := configFlag(fs)
	drain := fs.Duration("drain", defaultDrain, "after SIGTERM/SIGINT, how long SMTP messages under way may finish before their sessions are closed "+
		"(IMAP, POP3 and idle SMTP sessions end at once; a second signal exits at once); keep it below the platform's stop grace period")
	trace := fs.Bool("trace", false, "log the protocol dialogue up to each login at debug level, credentials shown as *** (same as log.trace: true)")
	if code, ok := inv.noArgs(fs); !ok {
		return code
	}
	cfg, err := config.Load(*path)
	if err != nil {
		var problems config.Problems
		if errors.As(err, &problems) {
			fmt.Fprintf(inv.stderr, "%s: %s; run \"xoauthd validate --config %s\"\n", *path, check.Plural(len(problems), "problem"), *path)
			for _, p := range problems {
				fmt.Fprintf(inv.stderr, "  %s\n", p)
			}
			return exitFailure
		}
		return inv.fail(err)
	}
	if *trace {
		cfg.Log.Trace = true // before anything reads the configuration
	}
	log := newLogger(cfg.Log, inv.stderr)
	if cfg.Log.Trace {
		log.Warn("protocol trace on: every client and upstream line up to the login is logged at debug level " +
			"(passwords, SASL responses and tokens as ***; relayed sessions are not traced); turn it off when done")
	}
	return serveDaemon(ctx, inv, cfg, log, *drain)
}

// serveDaemon starts a daemon for cfg and runs it until ctx is cancelled.
func serveDaemon(ctx context.Context, inv *invocation, cfg *config.Config, log *slog.Logger, drain time.Duration) int {
	d, err := daemon.New(cfg, daemon.Options{Log: log})
	if err != nil {
		return inv.fail(err)
	}
	// The listeners get a context that outlives the signal so that Shutdown,
	// not the signal itself, decides when sessions end.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	if err := d.Start(runCtx); err != nil {
		return inv.fail(err)
	}
	stopReloading := startReloading(runCtx, d, cfg.Path, log)
	log.Info("xoauthd started", "version", version, "config", cfg.Path)
	if inv.started != nil {
		inv.started()
	}
	<-ctx.Done()
	stopReloading()
	log.Info("stopping: no new connections; IMAP and POP3 sessions end now, SMTP messages under way may finish", "drain", drain)
	sctx, scancel := context.WithTimeout(context.Background(), drain)
	defer scancel()
	done := make(chan error, 1)
	go func() { done <- d.Shutdown(sctx) }()
	select {
	case err := <-done:
		if err != nil {
			log.Warn("sessions closed at the end of the drain time", "err", err)
		}
	case <-time.After(drain + exitSlack):
		log.Warn("sessions were still closing after the drain time; exiting anyway", "drain", drain)
	}
	log.Info("xoauthd stopped")
	return exitOK
}

// newLogger returns the process logger for the log section of the
// configuration. The protocol trace (log.trace) logs at debug level, so it
// lowers the level to debug.
func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	switch strings.ToLower(c.Level) {
	case "debug":
		level = slog.LevelDebug
	case "warn", "warning":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		level = slog.LevelInfo
	}
	if c.Trace {
		level = min(level, slog.LevelDebug)
	}
	opts := &slog.HandlerOptions{Level: level}
	if strings.ToLower(c.Format) == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
