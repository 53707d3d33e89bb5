package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// loginWarmups is the number of untimed logins per side before the timed
// ones (fills xoauthd's password cache and the TLS session caches).
const loginWarmups = 20

// loginCycle connects, logs in and logs out; it returns the time from the
// start of the connect to the tagged OK of the login.
func (e *env) loginCycle(ctx context.Context, s side) (time.Duration, error) {
	start := time.Now()
	w, err := e.imapSession(ctx, s)
	if err != nil {
		return 0, err
	}
	took := time.Since(start)
	err = w.imapLogout()
	w.Close()
	if err != nil {
		return 0, fmt.Errorf("imap %s logout: %w", s, err)
	}
	return took, nil
}

// runLogin measures login latency (sequential logins, direct and through
// interleaved) and login rate with sz.LoginClients clients at once.
func runLogin(ctx context.Context, e *env, sz sizes) ([]result, error) {
	for range loginWarmups {
		for _, s := range []side{direct, through} {
			if _, err := e.loginCycle(ctx, s); err != nil {
				return nil, fmt.Errorf("warm-up: %w", err)
			}
		}
	}
	out, err := e.sequentialLogins(ctx, sz.Logins)
	if err != nil {
		return out, err
	}
	rate, err := e.parallelLogins(ctx, sz)
	return append(out, rate...), err
}

// sequentialLogins runs n login cycles per side, alternating sides.
func (e *env) sequentialLogins(ctx context.Context, n int) ([]result, error) {
	lat := map[side][]time.Duration{}
	cpu0 := e.xoCPU()
	for i := range n {
		for _, s := range []side{direct, through} {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			d, err := e.loginCycle(ctx, s)
			if err != nil {
				return nil, fmt.Errorf("sequential login %d: %w", i, err)
			}
			lat[s] = append(lat[s], d)
		}
	}
	// Only the through logins reach xoauthd.
	cpuPer := (e.xoCPU() - cpu0) / time.Duration(n)
	dp50, tp50 := percentile(lat[direct], 50), percentile(lat[through], 50)
	dp99, tp99 := percentile(lat[direct], 99), percentile(lat[through], 99)
	added := ms(tp50 - dp50)
	p50 := compare("login", fmt.Sprintf("LOGIN p50, %d sequential", n), "ms", ms(dp50), ms(tp50), 0)
	p50.Note = "ratio > 1 is slower"
	p99 := compare("login", fmt.Sprintf("LOGIN p99, %d sequential", n), "ms", ms(dp99), ms(tp99), 0)
	return []result{
		p50, p99,
		single("login", "added latency p50 (through - direct)", "ms", added,
			fmt.Sprintf("<= %g ms", targetAddedLoginMS), atMost(added, targetAddedLoginMS)),
		single("login", "xoauthd CPU per login+logout", "µs", float64(cpuPer)/float64(time.Microsecond), "", nil),
	}, nil
}

// parallelLogins measures logins per second with sz.LoginClients clients
// each doing login cycles until sz.ParallelLogins are done.
func (e *env) parallelLogins(ctx context.Context, sz sizes) ([]result, error) {
	m, err := measureRounds(ctx, e, sz.Rounds, func(s side) (transfer, error) {
		return e.loginStorm(ctx, s, sz.LoginClients, sz.ParallelLogins)
	})
	if err != nil {
		return nil, fmt.Errorf("%d clients: %w", sz.LoginClients, err)
	}
	through := m.throughRate()
	r := compare("login", fmt.Sprintf("login+logout, %d clients", sz.LoginClients), "logins/s", m.directRate(), through, 0)
	r.Target = fmt.Sprintf(">= %d/s through", targetLoginsPerSec)
	r.Met = atLeast(through, targetLoginsPerSec)
	return []result{m.withCPU(r, false, "login")}, nil
}

// loginStorm runs total login cycles over clients workers.
func (e *env) loginStorm(ctx context.Context, s side, clients, total int) (transfer, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	cpu0 := e.cpuNow()
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(total) {
				if _, err := e.loginCycle(ctx, s); err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return transfer{}, firstErr
	}
	return transfer{count: total, took: time.Since(start), cpu: e.cpuSince(cpu0)}, nil
}

// cmpErr keeps the first error.
func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}
