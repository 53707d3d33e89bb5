package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
)

// stopOnSignals returns a context that the first value on sigs (SIGINT or
// SIGTERM) cancels, which stops the running command gracefully: serve stops
// accepting, ends IMAP and POP3 sessions and lets SMTP messages under way
// finish within the drain time. A second signal while that is under way
// says so on stderr and calls exit(exitFailure) at once, for whoever will
// not wait: what is cut then is what a crash would cut, and that loses
// nothing (an SMTP message that was not answered 250 was not accepted, and
// the token store never holds a half-written file). release stops watching.
func stopOnSignals(sigs <-chan os.Signal, stderr io.Writer, exit func(int)) (ctx context.Context, release func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	released := func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
	go func() {
		select {
		case <-sigs:
		case <-done:
			return
		}
		if released() {
			return
		}
		cancel()
		select {
		case sig := <-sigs:
			if released() {
				return
			}
			fmt.Fprintf(stderr, "xoauthd: second signal (%v): exiting now without waiting for sessions to finish\n", sig)
			exit(exitFailure)
		case <-done:
		}
	}()
	stop := sync.OnceFunc(func() { close(done) })
	return ctx, func() {
		stop()
		cancel()
	}
}
