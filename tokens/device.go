package tokens

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/term"
)

// Device authorization grant (RFC 8628).
const (
	grantDeviceCode = "urn:ietf:params:oauth:grant-type:device_code"
	// defaultDeviceInterval is the polling interval in seconds when the
	// provider names none (RFC 8628 §3.2).
	defaultDeviceInterval = 5
	// slowDownStep is added to the interval, in seconds, on every slow_down
	// (RFC 8628 §3.5).
	slowDownStep = 5
	// defaultDeviceLifetime applies when the provider sends no expires_in.
	defaultDeviceLifetime = 15 * time.Minute
	// maxPollFailures is how many temporary failures in a row the polling
	// tolerates before it gives up.
	maxPollFailures = 5
	// plainProgressEvery is how often a plain (non-terminal) output gets a
	// "still waiting" line.
	plainProgressEvery = time.Minute
)

// deviceFlow runs the device authorization grant: it shows the verification
// address and the code, then polls the token endpoint until the person has
// signed in, declined, or the code expired. x/oauth2 starts the flow
// (DeviceAuth); the polling is done here because it must show progress and
// lets tests shorten the interval, using x/oauth2 for each request.
func deviceFlow(ctx context.Context, p *provider, identity string, opts LoginOptions) (*oauth2.Token, error) {
	unit := opts.pollUnit
	if unit <= 0 {
		unit = time.Second
	}
	l, err := startDevice(ctx, p, identity, opts.HTTPClient, unit)
	if err != nil {
		return nil, err
	}
	expiry := l.Expiry
	out := newProgress(opts.Out)
	out.println("To sign in as %s, open %s in a browser on any device and enter the code %s",
		identity, l.VerificationURI, l.UserCode)
	if l.VerificationURIComplete != "" {
		out.println("(or open %s, which carries the code)", l.VerificationURIComplete)
	}
	out.println("The code expires at %s.", expiry.Local().Format(time.TimeOnly))
	stop := out.countdown(expiry)
	defer stop()
	return pollDevice(ctx, p, identity, l.da, expiry, unit, out)
}

// pollDevice polls every interval (RFC 8628 §3.4), slowing down when told
// (§3.5), and stops on success, denial, expiry or a permanent error.
func pollDevice(ctx context.Context, p *provider, identity string, da *oauth2.DeviceAuthResponse,
	expiry time.Time, unit time.Duration, out *progress) (*oauth2.Token, error) {
	interval := da.Interval
	if interval <= 0 {
		interval = defaultDeviceInterval
	}
	timer := time.NewTimer(time.Duration(interval) * unit)
	defer timer.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the device sign-in: %w", ctx.Err())
		case <-timer.C:
		}
		if !time.Now().Before(expiry) {
			return nil, &NeedsLoginError{Identity: identity, Meaning: "the device code expired before the sign-in was finished", Fix: loginCommand(identity + " --device")}
		}
		tok, err := p.tokenRequest(ctx, url.Values{"grant_type": {grantDeviceCode}, "device_code": {da.DeviceCode}})
		if err == nil {
			return tok, nil
		}
		var re *oauth2.RetrieveError
		switch {
		case errors.As(err, &re) && re.ErrorCode == "authorization_pending":
			failures = 0
		case errors.As(err, &re) && re.ErrorCode == "slow_down":
			interval += slowDownStep
			out.println("The identity provider asked to check less often; checking every %d s now.", interval)
		default:
			cerr := classify(err, identity, p.name, time.Now())
			if !IsTemporary(cerr) || failures >= maxPollFailures {
				return nil, cerr
			}
			failures++
			out.println("Checking the sign-in failed (%v); trying again.", cerr)
		}
		timer.Reset(time.Duration(interval) * unit)
	}
}

// progress writes a flow's messages. On a terminal it keeps one status line
// (the countdown) at the bottom and rewrites it in place; elsewhere it
// writes plain lines only.
type progress struct {
	mu     sync.Mutex
	w      io.Writer
	tty    bool
	status string // the current status line; "" when none is shown
}

func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	return &progress{w: w, tty: ok && term.IsTerminal(int(f.Fd()))}
}

// println writes one message line, keeping the status line below it.
func (p *progress) println(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.status != "" {
		io.WriteString(p.w, "\r\033[K")
	}
	fmt.Fprintf(p.w, format+"\n", args...)
	if p.tty && p.status != "" {
		io.WriteString(p.w, p.status)
	}
}

// setStatus replaces the status line (terminal only).
func (p *progress) setStatus(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	io.WriteString(p.w, "\r\033[K"+s)
	p.status = s
}

// countdown shows the time left until expiry: every second on a terminal,
// every plainProgressEvery as a plain line elsewhere. stop ends it.
func (p *progress) countdown(expiry time.Time) (stop func()) {
	every := plainProgressEvery
	if p.tty {
		every = time.Second
	}
	show := func() {
		left := time.Until(expiry).Round(time.Second)
		msg := fmt.Sprintf("Waiting for the sign-in... %s left", formatLeft(left))
		if p.tty {
			p.setStatus(msg)
		} else {
			p.println("%s", msg)
		}
	}
	if p.tty {
		show()
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				show()
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
		if p.tty {
			p.setStatus("")
			p.mu.Lock()
			p.status = ""
			p.mu.Unlock()
		}
	}
}

// formatLeft prints a remaining time as m:ss.
func formatLeft(d time.Duration) string {
	d = max(d, 0)
	return fmt.Sprintf("%d:%02d", int(d/time.Minute), int(d%time.Minute/time.Second))
}
