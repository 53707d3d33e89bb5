package smtpfront

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/proxy"
)

// manualClock is a Clock that moves only when the test says so; its timers
// fire when it reaches their time.
type manualClock struct {
	mu     sync.Mutex
	start  time.Time
	now    time.Time
	timers []*manualTimer
	fired  []time.Duration // when timers fired, from start
}

type manualTimer struct {
	at time.Time
	c  chan time.Time
}

func newManualClock() *manualClock {
	t0 := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	return &manualClock{start: t0, now: t0}
}

func (m *manualClock) Now() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.now
}

func (m *manualClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := &manualTimer{at: m.now.Add(d), c: make(chan time.Time, 1)}
	if d <= 0 {
		t.c <- m.now
		return t.c, func() bool { return false }
	}
	m.timers = append(m.timers, t)
	return t.c, func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		i := slices.Index(m.timers, t)
		if i >= 0 {
			m.timers = slices.Delete(m.timers, i, i+1)
		}
		return i >= 0
	}
}

// waiting returns how many timers are pending.
func (m *manualClock) waiting() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.timers)
}

// advanceToNext moves to the earliest pending timer's time and fires every
// timer due then; false when none is pending.
func (m *manualClock) advanceToNext() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.timers) == 0 {
		return false
	}
	next := m.timers[0].at
	for _, t := range m.timers {
		if t.at.Before(next) {
			next = t.at
		}
	}
	m.advanceLocked(next)
	return true
}

// advance moves the clock on by d, firing the timers due.
func (m *manualClock) advance(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.advanceLocked(m.now.Add(d))
}

func (m *manualClock) advanceLocked(to time.Time) {
	m.now = to
	var left []*manualTimer
	for _, t := range m.timers {
		if t.at.After(to) {
			left = append(left, t)
			continue
		}
		m.fired = append(m.fired, t.at.Sub(m.start))
		t.c <- t.at
	}
	m.timers = left
}

func (m *manualClock) firedAt() []time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.fired)
}

// paceRecorder counts the Pacer's metrics callbacks.
type paceRecorder struct {
	mu      sync.Mutex
	delays  []time.Duration
	refused []string
}

func (r *paceRecorder) options(clock Clock) PacerOptions {
	return PacerOptions{Clock: clock,
		OnDelay: func(_ string, d time.Duration) { r.mu.Lock(); r.delays = append(r.delays, d); r.mu.Unlock() },
		OnRefuse: func(id, reason string) {
			r.mu.Lock()
			r.refused = append(r.refused, id+" "+reason)
			r.mu.Unlock()
		}}
}

func (r *paceRecorder) counts() (delayed int, total time.Duration, refused []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range r.delays {
		total += d
	}
	return len(r.delays), total, slices.Clone(r.refused)
}

func TestPacerReserve(t *testing.T) {
	clock := newManualClock()
	p := NewPacer(PacerOptions{Clock: clock, MaxWait: 2 * time.Minute})
	rate := Rate{Messages: 5, Per: time.Minute} // one every 12 s
	// Eleven departures fit in the 2-minute bound: 0, 12, ..., 120 s.
	for i := range 11 {
		d, _, err := p.reserve("a", rate)
		if err != nil || d != time.Duration(i)*12*time.Second {
			t.Fatalf("reservation %d: wait %v, %v; want %v", i, d, err, time.Duration(i)*12*time.Second)
		}
	}
	_, _, err := p.reserve("a", rate)
	var le *limitError
	if !errors.As(err, &le) || le.retryAfter != 132*time.Second || le.backingOff {
		t.Fatalf("12th reservation: %v, want a refusal to retry in 132s", err)
	}
	// Another identity has its own bucket.
	if d, _, err := p.reserve("b", rate); d != 0 || err != nil {
		t.Fatalf("identity b: wait %v, %v", d, err)
	}
	// A departure given back (its client left) is booked again.
	clock.advance(132 * time.Second)
	d1, undo, _ := p.reserve("a", rate)
	undo()
	d2, _, _ := p.reserve("a", rate)
	if d1 != 0 || d2 != 0 {
		t.Fatalf("after the queue drained: waits %v then (after undo) %v, want 0 and 0", d1, d2)
	}
	// No limit: no wait at all.
	for range 100 {
		if d, _, err := p.reserve("c", Rate{}); d != 0 || err != nil {
			t.Fatalf("no limit: wait %v, %v", d, err)
		}
	}
}

func TestPacerBackOff(t *testing.T) {
	clock := newManualClock()
	p := NewPacer(PacerOptions{Clock: clock, MaxWait: 2 * time.Minute, Backoff: time.Minute, MaxBackoff: 4 * time.Minute})
	for i, want := range []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 4 * time.Minute} {
		if d := p.backOff("a"); d != want {
			t.Fatalf("back-off %d: %v, want %v", i, d, want)
		}
	}
	_, _, err := p.reserve("a", Rate{})
	var le *limitError
	if !errors.As(err, &le) || !le.backingOff || le.retryAfter != 4*time.Minute {
		t.Fatalf("during a 4-minute back-off: %v, want a refusal to retry in 4m", err)
	}
	clock.advance(3 * time.Minute)
	if d, _, err := p.reserve("a", Rate{}); d != time.Minute || err != nil {
		t.Fatalf("a minute before the back-off ends: wait %v, %v; want 1m", d, err)
	}
	p.accepted("a")
	if d := p.backOff("a"); d != time.Minute {
		t.Fatalf("back-off after an accepted message: %v, want it to start again at 1m", d)
	}
}

// TestPacingBurstOverThreeConnections: 12 messages sent at once over 3
// connections as one identity, with a limit of 5 a minute, all arrive and
// none is refused; the messages leave 12 s apart, as the bucket says. The
// clock is the test's: it moves to the next departure whenever a client
// waits for one.
func TestPacingBurstOverThreeConnections(t *testing.T) {
	clock := newManualClock()
	rec := &paceRecorder{}
	h := newHarness(t, func(o *Options) {
		o.Pacer = NewPacer(rec.options(clock))
		o.SendRate = func(proxy.Account) Rate { return Rate{Messages: 5, Per: time.Minute} }
	})
	errs := make(chan error, 3)
	for c := range 3 {
		cl := h.loggedIn()
		go func() {
			for i := range 4 {
				if err := send(cl, "billing@example.com", []string{"bob@example.net"}, testMessage(fmt.Sprintf("c%d-m%d", c, i), 5)); err != nil {
					errs <- fmt.Errorf("connection %d, message %d: %w", c, i, err)
					return
				}
			}
			errs <- cl.Quit()
		}()
	}
	done := 0
	deadline := time.Now().Add(60 * time.Second)
	for done < 3 {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
			done++
			continue
		default:
		}
		if !clock.advanceToNext() {
			if time.Now().After(deadline) {
				t.Fatalf("clients still sending after a minute; %d messages arrived", len(h.up.messages()))
			}
			time.Sleep(time.Millisecond)
		}
	}
	if n := len(h.up.messages()); n != 12 {
		t.Fatalf("upstream has %d messages, want 12", n)
	}
	// The first left at once; the other 11 waited for departures 12 s apart.
	var want []time.Duration
	for i := 1; i <= 11; i++ {
		want = append(want, time.Duration(i)*12*time.Second)
	}
	if got := clock.firedAt(); !slices.Equal(got, want) {
		t.Fatalf("departures at %v, want %v", got, want)
	}
	delayed, total, refused := rec.counts()
	if delayed != 11 || total <= 0 || len(refused) != 0 {
		t.Fatalf("metrics: %d delayed for %v in all, refused %v; want 11 delayed, none refused", delayed, total, refused)
	}
	h.log.waitFor(t, `msg="message delayed by the sending limit"`, `limit="5 messages per minute"`)
}

// TestPacingUpstreamRateLimit: an upstream answering Exchange's rate-limit
// reply at the end of DATA makes the identity back off, and the client gets
// 451 4.7.0 (not the 554, which would have it drop the message): first
// after waits within the bound, then at once when the back-off is longer
// than the bound. No message is acknowledged until the upstream accepts
// one, and an accepted message starts the back-off afresh.
func TestPacingUpstreamRateLimit(t *testing.T) {
	clock := newManualClock()
	rec := &paceRecorder{}
	opts := rec.options(clock)
	opts.MaxWait, opts.Backoff = 2*time.Minute, time.Minute
	h := newHarness(t, func(o *Options) { o.Pacer = NewPacer(opts) })
	quota := &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 2, 0},
		Message: "STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message due to a permanent exception with message Cannot submit message."}
	h.up.set(func(f *fakeUpstream) { f.dataErr = quota })
	c := h.loggedIn()

	// sendWaiting sends one message; when wait > 0 the client must first
	// wait that long for its MAIL, and the test moves the clock on.
	sendWaiting := func(id string, wait time.Duration) error {
		t.Helper()
		res := make(chan error, 1)
		go func() { res <- send(c, "billing@example.com", []string{"bob@example.net"}, testMessage(id, 3)) }()
		if wait > 0 {
			testkit.Eventually(t, 10*time.Second, "the client waits for its MAIL", func() bool { return clock.waiting() == 1 })
			before := clock.Now()
			clock.advanceToNext()
			if got := clock.Now().Sub(before); got != wait {
				t.Fatalf("%s waited %v, want %v", id, got, wait)
			}
		}
		select {
		case err := <-res:
			return err
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: no reply", id)
			return nil
		}
	}
	expect451 := func(err error, retry string) {
		t.Helper()
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 7, 0}) ||
			!strings.Contains(se.Message, "sending limit") || !strings.Contains(se.Message, "try again in "+retry+" seconds") {
			t.Fatalf("reply %v, want 451 4.7.0 naming the sending limit and \"try again in %s seconds\"", err, retry)
		}
	}
	expect451(sendWaiting("m1", 0), "60")
	expect451(sendWaiting("m2", time.Minute), "120")
	expect451(sendWaiting("m3", 2*time.Minute), "240")
	// The back-off (4 min) is longer than the bound: refused at once,
	// before anything goes upstream.
	started := 0
	h.up.set(func(f *fakeUpstream) { started = f.dataStarted })
	err := sendWaiting("m4", 0)
	expect451(err, "240")
	if !strings.Contains(err.Error(), "Upstream sending limit") {
		t.Errorf("refusal %v does not say it is the upstream's limit", err)
	}
	h.up.set(func(f *fakeUpstream) {
		if f.dataStarted != started {
			t.Error("a message refused at MAIL reached the upstream's DATA")
		}
		f.dataErr = nil
	})
	if n := len(h.up.messages()); n != 0 {
		t.Fatalf("upstream accepted %d messages while refusing", n)
	}
	clock.advance(4 * time.Minute)
	if err := sendWaiting("m5", 0); err != nil {
		t.Fatalf("after the back-off: %v", err)
	}
	if msgs := h.up.messages(); len(msgs) != 1 || !strings.Contains(string(msgs[0].data), "Subject: m5") {
		t.Fatalf("upstream has %d messages, want m5 alone", len(msgs))
	}
	h.up.set(func(f *fakeUpstream) { f.dataErr = quota })
	expect451(sendWaiting("m6", 0), "60") // afresh after an accepted message
	_, _, refused := rec.counts()
	want := []string{testIdentity + " upstream", testIdentity + " upstream", testIdentity + " upstream",
		testIdentity + " limit", testIdentity + " upstream"}
	if !slices.Equal(refused, want) {
		t.Errorf("refusals %v, want %v", refused, want)
	}
	h.log.waitFor(t, "the upstream's sending limit was reached: backing off for this identity", "backoff=1m0s",
		"message refused for now: sending limit reached")
}

// TestPacingWaitEndsWithTheSession: a client waiting for its identity's
// limit when the server begins to shut down gets 421 at once.
func TestPacingWaitEndsWithTheSession(t *testing.T) {
	clock := newManualClock()
	h := newHarness(t, func(o *Options) {
		o.Pacer = NewPacer(PacerOptions{Clock: clock})
		o.SendRate = func(proxy.Account) Rate { return Rate{Messages: 1, Per: time.Minute} }
	})
	c := h.loggedIn()
	if err := send(c, "billing@example.com", []string{"bob@example.net"}, testMessage("first", 2)); err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() { res <- c.Mail("billing@example.com", nil) }()
	testkit.Eventually(t, 10*time.Second, "the second MAIL waits", func() bool { return clock.waiting() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go h.psrv.Shutdown(ctx)
	var se *smtp.SMTPError
	if err := <-res; !errors.As(err, &se) || se.Code != 421 {
		t.Fatalf("MAIL waiting during shutdown: %v, want 421", err)
	}
	testkit.Eventually(t, 10*time.Second, "the timer is stopped", func() bool { return clock.waiting() == 0 })
}
