package smtpfront

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Defaults of PacerOptions.
const (
	// DefaultMaxPaceWait bounds how long one MAIL waits for its identity's
	// sending limit, well under the 5 minutes a client waits for the reply
	// to MAIL (RFC 5321 §4.5.3.2.2). A longer wait is refused with 451.
	DefaultMaxPaceWait = 2 * time.Minute
	// DefaultBackoff is the pause of an identity after the upstream's first
	// rate-limit reply; each further one in a row doubles it, up to
	// DefaultMaxBackoff.
	DefaultBackoff    = time.Minute
	DefaultMaxBackoff = time.Hour
	// maxPaceEntries bounds the identities a Pacer remembers; beyond it,
	// those with nothing reserved and no back-off are forgotten.
	maxPaceEntries = 10000
)

// Rate is a sending limit: Messages per Per. The zero Rate is no limit.
type Rate struct {
	Messages int
	Per      time.Duration
}

// off reports whether r limits nothing.
func (r Rate) off() bool { return r.Messages <= 0 || r.Per <= 0 }

// interval is the time between two messages at the rate.
func (r Rate) interval() time.Duration { return r.Per / time.Duration(r.Messages) }

// String names the limit for logs and replies: "30 messages per minute".
func (r Rate) String() string {
	if r.off() {
		return "no limit"
	}
	per := "per " + r.Per.String()
	switch r.Per {
	case time.Second:
		per = "per second"
	case time.Minute:
		per = "per minute"
	case time.Hour:
		per = "per hour"
	}
	if r.Messages == 1 {
		return "1 message " + per
	}
	return fmt.Sprintf("%d messages %s", r.Messages, per)
}

// Clock is the time source of a Pacer (tests use a manual one).
type Clock interface {
	Now() time.Time
	// NewTimer returns a channel that receives after d, and a function that
	// stops the timer.
	NewTimer(d time.Duration) (<-chan time.Time, func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}

// PacerOptions tune a Pacer. Zero values take the defaults.
type PacerOptions struct {
	// MaxWait bounds one wait; a message that would wait longer is refused
	// with "451 4.7.0" saying when to retry.
	MaxWait time.Duration
	// Backoff and MaxBackoff: the pause after the upstream's rate-limit
	// replies (see DefaultBackoff).
	Backoff, MaxBackoff time.Duration
	// Clock is the time source (default: the system clock).
	Clock Clock
	// OnDelay is called for each message that waited, with the wait;
	// OnRefuse for each message refused, with why: "limit" (the wait would
	// exceed MaxWait) or "upstream" (the upstream's rate-limit reply).
	// They feed the metrics.
	OnDelay  func(identity string, waited time.Duration)
	OnRefuse func(identity, reason string)
}

// Pacer keeps each identity's messages within its upstream's sending limit
// (Exchange Online: 30 a minute per mailbox), shared by every SMTP listener
// and client session sending as that identity. It is a token bucket of one
// message, refilled at the rate: the messages of a burst leave one interval
// apart, in the order they asked, so that the upstream never sees more than
// the rate in any period; a message is delayed at MAIL, not refused. When
// the upstream still answers with its rate-limit reply, the identity pauses
// (Backoff, doubling while the replies continue). It is safe for concurrent
// use.
type Pacer struct {
	opts PacerOptions

	mu sync.Mutex
	m  map[string]*paceState // lower-cased identity
}

// paceState is one identity's bucket and back-off.
type paceState struct {
	next    time.Time     // when the next message may leave (the bucket's refill time)
	blocked time.Time     // no message leaves before this (back-off)
	backoff time.Duration // the next back-off; 0: none in a row
}

// NewPacer returns a Pacer with opts.
func NewPacer(opts PacerOptions) *Pacer {
	if opts.MaxWait <= 0 {
		opts.MaxWait = DefaultMaxPaceWait
	}
	if opts.Backoff <= 0 {
		opts.Backoff = DefaultBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	return &Pacer{opts: opts, m: make(map[string]*paceState)}
}

// limitError is a message refused for now by a sending limit.
type limitError struct {
	rate       Rate          // the limit in force ("no limit" when only a back-off holds)
	retryAfter time.Duration // when a message may leave again
	backingOff bool          // the upstream's rate-limit reply caused the wait
}

func (e *limitError) Error() string {
	return fmt.Sprintf("sending limit (%s) reached, retry in %s", e.rate, e.retryAfter)
}

// reserve books the next departure of identity at rate r and returns how
// long the caller must wait for it (0: at once). A departure further away
// than MaxWait is not booked: reserve returns a *limitError instead.
func (p *Pacer) reserve(identity string, r Rate) (wait time.Duration, undo func(), err error) {
	now := p.opts.Clock.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.state(identity, now)
	at := now
	if !r.off() && st.next.After(at) {
		at = st.next
	}
	backingOff := st.blocked.After(at)
	if backingOff {
		at = st.blocked
	}
	wait = at.Sub(now)
	if wait > p.opts.MaxWait {
		return 0, nil, &limitError{rate: r, retryAfter: wait, backingOff: backingOff}
	}
	if r.off() {
		return wait, func() {}, nil
	}
	prev := st.next
	st.next = at.Add(r.interval())
	booked := st.next
	undo = func() {
		// A client that left while waiting gives its departure back, unless
		// a later one was booked behind it meanwhile.
		p.mu.Lock()
		defer p.mu.Unlock()
		if st.next.Equal(booked) {
			st.next = prev
		}
	}
	return wait, undo, nil
}

// state returns identity's entry, creating it; the caller holds mu.
func (p *Pacer) state(identity string, now time.Time) *paceState {
	st := p.m[identity]
	if st != nil {
		return st
	}
	if len(p.m) >= maxPaceEntries {
		for id, s := range p.m {
			if !s.next.After(now) && !s.blocked.After(now) && s.backoff == 0 {
				delete(p.m, id)
			}
		}
	}
	st = &paceState{}
	p.m[identity] = st
	return st
}

// wait blocks until identity may send its next message at rate r, at most
// MaxWait. It returns how long it waited; a *limitError when the wait would
// be longer; ctx's error, or errDrained when drain is closed first (the
// departure is then given back).
func (p *Pacer) wait(ctx context.Context, drain <-chan struct{}, identity string, r Rate) (time.Duration, error) {
	d, undo, err := p.reserve(identity, r)
	if err != nil {
		if p.opts.OnRefuse != nil {
			p.opts.OnRefuse(identity, "limit")
		}
		return 0, err
	}
	if d <= 0 {
		return 0, nil
	}
	c, stop := p.opts.Clock.NewTimer(d)
	defer stop()
	select {
	case <-c:
	case <-ctx.Done():
		undo()
		return 0, ctx.Err()
	case <-drain:
		undo()
		return 0, errDrained
	}
	if p.opts.OnDelay != nil {
		p.opts.OnDelay(identity, d)
	}
	return d, nil
}

// errDrained: the server began a graceful shutdown during a wait.
var errDrained = fmt.Errorf("server shutting down")

// backOff pauses identity after the upstream's rate-limit reply and
// returns the pause: Backoff for the first in a row, doubling up to
// MaxBackoff.
func (p *Pacer) backOff(identity string) time.Duration {
	now := p.opts.Clock.Now()
	p.mu.Lock()
	st := p.state(identity, now)
	if st.backoff == 0 {
		st.backoff = p.opts.Backoff
	}
	d := st.backoff
	if until := now.Add(d); until.After(st.blocked) {
		st.blocked = until
	}
	st.backoff = min(2*st.backoff, p.opts.MaxBackoff)
	p.mu.Unlock()
	if p.opts.OnRefuse != nil {
		p.opts.OnRefuse(identity, "upstream")
	}
	return d
}

// accepted notes that the upstream accepted a message of identity: the
// next rate-limit reply starts the back-off afresh.
func (p *Pacer) accepted(identity string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st := p.m[identity]; st != nil {
		st.backoff = 0
	}
}
