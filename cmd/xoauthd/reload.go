package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/daemon"
)

// startReloading reloads d's configuration from path when the file changes
// (watched with fsnotify, debounced) and on SIGHUP, until ctx is done or
// the returned stop is called; stop waits for a reload in progress.
func startReloading(ctx context.Context, d *daemon.Daemon, path string, log *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	w, err := d.Watch(ctx, path, config.DefaultDebounce)
	if err != nil {
		log.Warn("not watching the configuration file for changes; reload it with SIGHUP", "config", path, "err", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading the configuration", "config", path)
				_ = d.ReloadFile(path) // ReloadFailed logged every problem
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		cancel()
		<-done
		if w != nil {
			_ = w.Close()
		}
	}
}
