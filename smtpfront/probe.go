package smtpfront

import (
	"context"
	"sync"
	"time"

	"github.com/xoauthd/xoauthd/proxy"
)

// The upstream is dialled only after AUTH, but a client reads EHLO first
// and does not ask again. So that the first session after a start already
// offers what the upstream supports (SMTPUTF8 above all: without it a
// client cannot send to an internationalised address), the front asks each
// upstream of Options.Upstreams for its EHLO at start, without logging in:
// greeting, EHLO, STARTTLS (verified), EHLO, QUIT. A login later replaces
// what the probe learnt with what the upstream offers after AUTH.
const (
	// probeTimeout bounds the probe of one upstream.
	probeTimeout = 10 * time.Second
	// probeWait bounds how long a client session that arrives while the
	// probes run waits for them before its greeting.
	probeWait = 3 * time.Second
)

// probeState is the run of the start-up probes.
type probeState struct {
	done   chan struct{} // closed when every probe has ended
	cancel context.CancelFunc
}

// startProbes probes every upstream of Options.Upstreams in the background.
func (s *Server) startProbes() {
	s.probe.done = make(chan struct{})
	if s.opts.Upstreams == nil {
		close(s.probe.done)
		s.probe.cancel = func() {}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	s.probe.cancel = cancel
	dialers := s.opts.Upstreams()
	go func() {
		defer close(s.probe.done)
		defer cancel()
		var wg sync.WaitGroup
		for _, d := range dialers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.probeUpstream(ctx, d)
			}()
		}
		wg.Wait()
	}()
}

// probeUpstream learns the EHLO extensions of the upstream d dials.
func (s *Server) probeUpstream(ctx context.Context, d *proxy.Dialer) {
	conn, err := d.Dial(ctx)
	if err != nil {
		s.opts.Log.Info("probing the upstream's SMTP extensions failed; they are learnt at the first login",
			"upstream", d.Addr, "err", err)
		return
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c, _, err := helloUpstream(ctx, conn, d, s.opts.Domain)
	if err != nil {
		conn.Close()
		s.opts.Log.Info("probing the upstream's SMTP extensions failed; they are learnt at the first login",
			"upstream", d.Addr, "err", proxy.RedactUpstreamText(err.Error()))
		return
	}
	ext := upstreamExtOf(c)
	s.exts.learn(d.Addr, ext)
	s.opts.Log.Debug("upstream SMTP extensions", "upstream", d.Addr, "smtputf8", ext.smtputf8, "size", ext.size)
	c.CommandTimeout = quitTimeout
	if c.Quit() != nil {
		c.Close()
	}
}

// awaitProbes waits, bounded by probeWait and ctx, for the start-up probes.
func (s *Server) awaitProbes(ctx context.Context) {
	select {
	case <-s.probe.done:
		return
	default:
	}
	t := time.NewTimer(probeWait)
	defer t.Stop()
	select {
	case <-s.probe.done:
	case <-t.C:
	case <-ctx.Done():
	}
}
