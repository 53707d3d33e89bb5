package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
)

// xoCPU is xoauthd's CPU time at one moment (0 when it cannot be read).
func (e *env) xoCPU() time.Duration {
	st, err := e.xo.stats()
	if err != nil {
		return 0
	}
	return st.CPU
}

// cpuSnap is the CPU time used so far by each party of a measurement.
type cpuSnap struct {
	xo   time.Duration // the xoauthd process
	up   time.Duration // Dovecot's processes (0 for the in-process upstream)
	self time.Duration // the benchmark: clients, SMTP sink, IdP, in-process upstream
}

// cpuNow takes a snapshot.
func (e *env) cpuNow() cpuSnap {
	s := cpuSnap{xo: e.xoCPU(), self: selfCPU()}
	if e.dcPID > 0 {
		s.up = groupCPU(e.dcPID)
	}
	return s
}

// cpuSince returns the CPU used between then and now.
func (e *env) cpuSince(then cpuSnap) cpuSnap {
	now := e.cpuNow()
	return cpuSnap{xo: now.xo - then.xo, up: now.up - then.up, self: now.self - then.self}
}

// total is the CPU time of all parties.
func (c cpuSnap) total() time.Duration { return c.xo + c.up + c.self }

// transfer is one timed measurement: bytes or operations and how long they
// took, with the CPU time each party used meanwhile.
type transfer struct {
	bytes int64
	count int // messages or logins
	took  time.Duration
	cpu   cpuSnap
}

// parallel runs fn(i) for i in [0, n) at once after each has been set up by
// setup(i), and returns the time from the common start to the last end.
func parallel(n int, setup func(i int) error, fn func(i int) error) (time.Duration, error) {
	errs := make([]error, n)
	for i := range n {
		if errs[i] = setup(i); errs[i] != nil {
			return 0, errs[i]
		}
	}
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(i)
		}()
	}
	wg.Wait()
	return time.Since(start), errors.Join(errs...)
}

// parallelCPU is parallel that also returns the CPU each party used from
// the end of the last setup to the end of the last fn.
func (e *env) parallelCPU(n int, setup func(i int) error, fn func(i int) error) (time.Duration, cpuSnap, error) {
	var cpu0 cpuSnap
	setupAll := func(i int) error {
		err := setup(i)
		if i == n-1 {
			cpu0 = e.cpuNow()
		}
		return err
	}
	took, err := parallel(n, setupAll, fn)
	if err != nil {
		return 0, cpuSnap{}, err
	}
	return took, e.cpuSince(cpu0), nil
}

// ---- IMAP FETCH ----

// fetchRun fetches the whole corpus in each of n sessions at once.
func (e *env) fetchRun(ctx context.Context, s side, n int) (transfer, error) {
	conns := make([]*wireConn, n)
	defer closeAll(conns)
	got := make([]int64, n)
	scratch := make([][]byte, n)
	setup := func(i int) error {
		w, err := e.imapSession(ctx, s)
		if err != nil {
			return err
		}
		conns[i], scratch[i] = w, make([]byte, discardBufSize)
		_, err = w.imapCmd("EXAMINE INBOX", nil)
		return err
	}
	took, cpu, err := e.parallelCPU(n, setup, func(i int) error {
		var err error
		got[i], err = conns[i].imapCmd("FETCH 1:"+strconv.Itoa(e.corpus)+" BODY.PEEK[]", scratch[i])
		if err == nil && got[i] != e.corpusBytes {
			err = fmt.Errorf("fetch %s: got %d literal bytes, want %d", s, got[i], e.corpusBytes)
		}
		return err
	})
	if err != nil {
		return transfer{}, err
	}
	t := transfer{took: took, cpu: cpu, count: n * e.corpus}
	for i, w := range conns {
		t.bytes += got[i]
		_ = w.imapLogout()
	}
	return t, nil
}

// runFetch measures IMAP FETCH of the corpus in one session and in
// sz.FetchParallel sessions at once, direct and through.
func runFetch(ctx context.Context, e *env, sz sizes) ([]result, error) {
	if err := e.ensureCorpus(sz.MailMsgs, sz.MailMsgSize); err != nil {
		return nil, err
	}
	// Warm the upstream (index, page cache) outside the timed runs; logins
	// are never timed here.
	if _, err := e.fetchRun(ctx, direct, 1); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	shapes := []struct {
		name     string
		sessions int
	}{{"1 session", 1}, {strconv.Itoa(sz.FetchParallel) + " sessions", sz.FetchParallel}}
	var out []result
	for _, sh := range shapes {
		m, err := measureRounds(ctx, e, sz.Rounds, func(s side) (transfer, error) { return e.fetchRun(ctx, s, sh.sessions) })
		if err != nil {
			return out, fmt.Errorf("%s: %w", sh.name, err)
		}
		r := compare("fetch", "FETCH "+sh.name, "MB/s", m.directMBps(), m.throughMBps(), targetThroughputRatio)
		out = append(out, m.withCPU(r, true, ""))
	}
	return out, nil
}

// ---- POP3 RETR ----

// retrRun retrieves the corpus message by message in one session.
func (e *env) retrRun(ctx context.Context, s side, count int) (transfer, error) {
	w, err := e.pop3Session(ctx, s)
	if err != nil {
		return transfer{}, err
	}
	defer w.Close()
	cpu0 := e.cpuNow()
	start := time.Now()
	var total int64
	for i := 1; i <= count; i++ {
		if err := w.pop3Cmd("RETR "+strconv.Itoa(i), false); err != nil {
			return transfer{}, err
		}
		n, err := w.pop3Multiline()
		if err != nil {
			return transfer{}, fmt.Errorf("RETR %d: %w", i, err)
		}
		total += n
	}
	t := transfer{bytes: total, count: count, took: time.Since(start), cpu: e.cpuSince(cpu0)}
	_ = w.pop3Cmd("QUIT", false)
	return t, nil
}

// runPOP3 measures POP3 RETR of the corpus, direct and through.
func runPOP3(ctx context.Context, e *env, sz sizes) ([]result, error) {
	if err := e.ensureCorpus(sz.MailMsgs, sz.MailMsgSize); err != nil {
		return nil, err
	}
	if _, err := e.retrRun(ctx, direct, sz.MailMsgs); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	m, err := measureRounds(ctx, e, sz.Rounds, func(s side) (transfer, error) { return e.retrRun(ctx, s, sz.MailMsgs) })
	if err != nil {
		return nil, err
	}
	r := compare("pop3", "RETR "+strconv.Itoa(sz.MailMsgs)+" msgs", "MB/s", m.directMBps(), m.throughMBps(), targetThroughputRatio)
	return []result{m.withCPU(r, true, "")}, nil
}

// ---- SMTP ----

// smtpRun submits total messages split over n sessions at once.
func (e *env) smtpRun(ctx context.Context, s side, n, total int, msg []byte) (transfer, error) {
	conns := make([]*wireConn, n)
	defer closeAll(conns)
	setup := func(i int) error {
		w, err := e.smtpSession(ctx, s)
		conns[i] = w
		return err
	}
	relayed := e.sinkCount()
	took, cpu, err := e.parallelCPU(n, setup, func(i int) error {
		share := total/n + btoi(i < total%n)
		for k := range share {
			if err := conns[i].smtpSend(benchSender, benchRcpt, msg); err != nil {
				return fmt.Errorf("smtp %s message %d: %w", s, k, err)
			}
		}
		return nil
	})
	if err != nil {
		return transfer{}, err
	}
	t := transfer{bytes: int64(total) * int64(len(msg)), count: total, took: took, cpu: cpu}
	for _, w := range conns {
		_ = w.smtpCmd("QUIT", "221")
	}
	// Each 250 means Dovecot relayed the message to the sink first.
	if got := e.sinkCount() - relayed; e.dc != nil && got != total {
		return transfer{}, fmt.Errorf("smtp %s: the sink got %d of %d messages", s, got, total)
	}
	return t, nil
}

// sinkCount is how many messages Dovecot has relayed to its sink (0 without
// Dovecot).
func (e *env) sinkCount() int {
	if e.dc == nil {
		return 0
	}
	return e.dc.Sink.Discarded()
}

// runSMTP measures SMTP submission in one session and in
// sz.SMTPParallel sessions at once, direct and through.
func runSMTP(ctx context.Context, e *env, sz sizes) ([]result, error) {
	msg := message("smtp", messageBody(sz.SMTPMsgSize))
	if _, err := e.smtpRun(ctx, direct, 1, min(5, sz.SMTPMsgs), msg); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	var out []result
	for _, n := range []int{1, sz.SMTPParallel} {
		name := fmt.Sprintf("%d msgs, %d session", sz.SMTPMsgs, n)
		if n > 1 {
			name += "s"
		}
		m, err := measureRounds(ctx, e, sz.Rounds, func(s side) (transfer, error) { return e.smtpRun(ctx, s, n, sz.SMTPMsgs, msg) })
		if err != nil {
			return out, fmt.Errorf("%s: %w", name, err)
		}
		r := compare("smtp", name, "msgs/s", m.directRate(), m.throughRate(), targetThroughputRatio)
		out = append(out, m.withCPU(r, true, ""), compare("smtp", name, "MB/s", m.directMBps(), m.throughMBps(), 0))
	}
	return out, nil
}

// btoi is 1 for true.
func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ---- rounds ----

// measured holds the rounds of one direct-versus-through measurement.
type measured struct {
	direct, through []transfer
}

// measureRounds runs fn direct, then through, rounds times.
func measureRounds(ctx context.Context, e *env, rounds int, fn func(side) (transfer, error)) (measured, error) {
	var m measured
	for range rounds {
		for _, s := range []side{direct, through} {
			if err := ctx.Err(); err != nil {
				return m, err
			}
			t, err := fn(s)
			if err != nil {
				return m, err
			}
			if s == direct {
				m.direct = append(m.direct, t)
			} else {
				m.through = append(m.through, t)
			}
		}
		if err := e.xo.alive(); err != nil {
			return m, err
		}
	}
	return m, nil
}

// medianOf returns the median of f over the rounds.
func medianOf(ts []transfer, f func(transfer) float64) float64 {
	xs := make([]float64, len(ts))
	for i, t := range ts {
		xs[i] = f(t)
	}
	return median(xs)
}

// directMBps and the other three are the medians of the rounds' rates.
func (m measured) directMBps() float64 {
	return medianOf(m.direct, func(t transfer) float64 { return mbps(t.bytes, t.took) })
}

func (m measured) throughMBps() float64 {
	return medianOf(m.through, func(t transfer) float64 { return mbps(t.bytes, t.took) })
}

func (m measured) directRate() float64 {
	return medianOf(m.direct, func(t transfer) float64 { return perSecond(t.count, t.took) })
}

func (m measured) throughRate() float64 {
	return medianOf(m.through, func(t transfer) float64 { return perSecond(t.count, t.took) })
}

// minCPU is the least CPU time (summed over the rounds) worth reporting:
// /proc counts it in 10 ms ticks.
const minCPU = 200 * time.Millisecond

// cpuPerGB returns the median CPU seconds per 10^9 bytes of each party.
func cpuPerGB(ts []transfer) cpuShare {
	per := func(f func(cpuSnap) time.Duration) float64 {
		return medianOf(ts, func(t transfer) float64 {
			if t.bytes == 0 {
				return 0
			}
			return f(t.cpu).Seconds() / (float64(t.bytes) / 1e9)
		})
	}
	return cpuShare{
		Per:      "GB",
		Upstream: per(func(c cpuSnap) time.Duration { return c.up }),
		Xoauthd:  per(func(c cpuSnap) time.Duration { return c.xo }),
		Client:   per(func(c cpuSnap) time.Duration { return c.self }),
	}
}

// cpuPerOp returns the median CPU microseconds per counted operation.
func cpuPerOp(ts []transfer, per string) cpuShare {
	f := func(g func(cpuSnap) time.Duration) float64 {
		return medianOf(ts, func(t transfer) float64 {
			return float64(g(t.cpu)) / float64(time.Microsecond) / float64(max(t.count, 1))
		})
	}
	return cpuShare{
		Per:      per,
		Upstream: f(func(c cpuSnap) time.Duration { return c.up }),
		Xoauthd:  f(func(c cpuSnap) time.Duration { return c.xo }),
		Client:   f(func(c cpuSnap) time.Duration { return c.self }),
	}
}

// withCPU adds the CPU accounting of m to r: per party and unit, and the
// CPU-bound ratio (what the throughput ratio becomes when every core is
// busy: CPU per unit direct over CPU per unit through).
func (m measured) withCPU(r result, perGB bool, per string) result {
	var sum time.Duration
	for _, t := range m.through {
		sum += t.cpu.total()
	}
	if sum < minCPU {
		return r
	}
	d, t := cpuPerOp(m.direct, per), cpuPerOp(m.through, per)
	if perGB {
		d, t = cpuPerGB(m.direct), cpuPerGB(m.through)
	}
	r.CPUDirect, r.CPUThrough = &d, &t
	if t.total() > 0 {
		ratio := d.total() / t.total()
		r.CPURatio = &ratio
	}
	r.Note = strings.TrimPrefix(r.Note+"; "+cpuNote(d, t), "; ")
	if lo, hi := m.ratioRange(perGB); len(m.through) > 1 && !math.IsInf(lo, 0) {
		r.Note += fmt.Sprintf("; round ratios %.2f-%.2f", lo, hi)
	}
	return r
}

// ratioRange returns the lowest and highest through/direct ratio of the
// rounds (by bytes per second, or by operations per second).
func (m measured) ratioRange(bytes bool) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for i := range min(len(m.direct), len(m.through)) {
		d, t := m.direct[i], m.through[i]
		rd, rt := perSecond(d.count, d.took), perSecond(t.count, t.took)
		if bytes {
			rd, rt = mbps(d.bytes, d.took), mbps(t.bytes, t.took)
		}
		if rd > 0 {
			lo, hi = min(lo, rt/rd), max(hi, rt/rd)
		}
	}
	return lo, hi
}

// cpuNote spells the CPU accounting out.
func cpuNote(d, t cpuShare) string {
	unit := "µs/" + d.Per
	if d.Per == "GB" {
		unit = "s/GB"
	}
	f := fmtFloat
	return fmt.Sprintf("CPU %s direct: upstream %s + client %s = %s; through: upstream %s + xoauthd %s + client %s = %s",
		unit, f(d.Upstream), f(d.Client), f(d.total()), f(t.Upstream), f(t.Xoauthd), f(t.Client), f(t.total()))
}
