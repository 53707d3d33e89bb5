package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Session ramp settings.
const (
	// maxReportedErrors is how many distinct connect failures are quoted.
	maxReportedErrors = 5
	// livenessSample is how many idle sessions get a NOOP after the idle
	// window, to show they are still relayed.
	livenessSample = 100
	// closeWorkers close the sessions at the end.
	closeWorkers = 64
)

// sessionRamp is the outcome of opening many sessions.
type sessionRamp struct {
	conns  []*wireConn // nil where the connect failed
	ok     int
	failed int
	errs   []string
	took   time.Duration
}

// ramp opens n logged-in IMAP sessions through xoauthd with workers
// connecting at once.
func (e *env) ramp(ctx context.Context, n, workers int) *sessionRamp {
	r := &sessionRamp{conns: make([]*wireConn, n)}
	var next atomic.Int64
	var ok, failed atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n && ctx.Err() == nil; i = int(next.Add(1)) - 1 {
				w, err := e.imapSessionSized(ctx, through, idleBufSize)
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if len(r.errs) < maxReportedErrors {
						r.errs = append(r.errs, err.Error())
					}
					mu.Unlock()
					continue
				}
				_ = w.c.SetDeadline(time.Time{}) // idle for as long as the benchmark wants
				r.conns[i] = w
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	r.took, r.ok, r.failed = time.Since(start), int(ok.Load()), int(failed.Load())
	return r
}

// liveness sends NOOP on up to livenessSample sessions spread over the
// ramp and returns how many did not answer OK.
func (r *sessionRamp) liveness() int {
	dead, tried := 0, 0
	step := max(1, len(r.conns)/livenessSample)
	for i := 0; i < len(r.conns) && tried < livenessSample; i += step {
		w := r.conns[i]
		if w == nil {
			continue
		}
		tried++
		if _, err := w.imapCmd("NOOP", nil); err != nil {
			dead++
		}
	}
	return dead
}

// closeAll closes every session with a few workers.
func (r *sessionRamp) closeAll() {
	var wg sync.WaitGroup
	var next atomic.Int64
	for range closeWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < len(r.conns); i = int(next.Add(1)) - 1 {
				if w := r.conns[i]; w != nil {
					w.Close()
				}
			}
		}()
	}
	wg.Wait()
}

// prepareSessions retunes Dovecot for many idle sessions and starts a
// fresh daemon, so that memory freed by earlier scenarios does not hide
// what the sessions take.
func prepareSessions(ctx context.Context, e *env, _ sizes) error {
	if e.dc != nil {
		if err := e.retuneDovecot(dovecotSessions); err != nil {
			return err
		}
	}
	return e.restartDaemon(ctx)
}

// runSessions ramps to sz.Sessions idle IMAP sessions through xoauthd and
// reports failed connects, xoauthd's memory per session and its CPU use
// while they sit idle.
func runSessions(ctx context.Context, e *env, sz sizes) ([]result, error) {
	if _, err := e.loginCycle(ctx, through); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	time.Sleep(sz.Settle)
	memBefore, err := e.xo.memStats(ctx)
	if err != nil {
		return nil, err
	}
	before, err := e.xo.stats()
	if err != nil {
		return nil, fmt.Errorf("reading xoauthd's memory before the ramp: %w", err)
	}
	r := e.ramp(ctx, sz.Sessions, sz.RampWorkers)
	defer r.closeAll()
	if err := e.xo.alive(); err != nil {
		return nil, err
	}
	time.Sleep(sz.Settle) // let xoauthd finish the last logins' work
	after, err := e.xo.stats()
	if err != nil {
		return nil, err
	}
	time.Sleep(sz.IdleWindow)
	idle, err := e.xo.stats()
	if err != nil {
		return nil, err
	}
	dead := r.liveness()
	memAfter, err := e.xo.memStats(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := e.xo.control(ctx, ctlHeap, "sessions"); err != nil {
		return nil, err
	}
	return sessionResults(sz, r, before, after, idle, dead, memBefore, memAfter), rampError(sz, r)
}

// rampError fails the scenario outright when no session came up, or in
// quick mode when any connect failed.
func rampError(sz sizes, r *sessionRamp) error {
	if r.ok == 0 || sz.StrictConnects && r.failed > 0 {
		return fmt.Errorf("%d of %d session connects failed: %v", r.failed, sz.Sessions, r.errs)
	}
	return nil
}

// sessionResults turns the measurements into figures.
func sessionResults(sz sizes, r *sessionRamp, before, after, idle procStats, dead int, mb, ma *runtimeMem) []result {
	per := 0.0
	if r.ok > 0 {
		per = float64(after.RSSKiB-before.RSSKiB) / float64(r.ok)
	}
	idlePct := 100 * (idle.CPU - after.CPU).Seconds() / sz.IdleWindow.Seconds()
	loginCPU := 0.0
	if r.ok > 0 {
		loginCPU = float64(after.CPU-before.CPU) / float64(time.Microsecond) / float64(r.ok)
	}
	established := single("sessions", "sessions established", "sessions", float64(r.ok),
		fmt.Sprintf("= %d", sz.Sessions), atLeast(float64(r.ok), float64(sz.Sessions)))
	failed := single("sessions", "failed connects", "connects", float64(r.failed), "= 0", atMost(float64(r.failed), 0))
	if len(r.errs) > 0 {
		failed.Note = r.errs[0]
	}
	rss := single("sessions", "xoauthd RSS per idle session", "KiB", per,
		fmt.Sprintf("<= %g KiB", targetRSSPerSessKiB), atMost(per, targetRSSPerSessKiB))
	rss.Note = fmt.Sprintf("VmRSS %d -> %d KiB, %d threads", before.RSSKiB, after.RSSKiB, after.Threads)
	if mb != nil && ma != nil && r.ok > 0 {
		n := float64(r.ok)
		rss.Note += fmt.Sprintf("; live heap %.1f KiB, stacks %.1f KiB, %.2f goroutines per session",
			float64(int64(ma.HeapInuse)-int64(mb.HeapInuse))/1024/n,
			float64(int64(ma.StackInuse)-int64(mb.StackInuse))/1024/n,
			float64(ma.NumGoroutine-mb.NumGoroutine)/n)
	}
	return []result{
		established, failed, rss,
		single("sessions", fmt.Sprintf("xoauthd CPU while idle (%s)", sz.IdleWindow), "% of a core", idlePct, "", nil),
		single("sessions", "ramp rate", "sessions/s", perSecond(r.ok, r.took), "", nil),
		single("sessions", "xoauthd CPU per session login", "µs", loginCPU, "", nil),
		single("sessions", "sessions not answering NOOP after idle", "sessions", float64(dead), "= 0", atMost(float64(dead), 0)),
	}
}
