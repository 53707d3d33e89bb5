package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Relay timings and sizes.
const (
	// DefaultIdleTimeout ends a relayed session without traffic either way
	// for this long when Relay gets idle <= 0: over 30 minutes, so an IMAP
	// IDLE that the server refreshes every 29 minutes survives (RFC 9051
	// section 6.3.13).
	DefaultIdleTimeout = 31 * time.Minute
	// halfClosedIdle replaces the idle timeout once one direction has ended:
	// a peer that keeps its side open after the other hung up is let go
	// after this long without traffic.
	halfClosedIdle = time.Minute
	// relayBufSize is the copy buffer of each direction when the kernel
	// cannot move the bytes itself (TLS on either side).
	relayBufSize = 128 << 10
	// idleReadSize is the buffer a direction waits for data with.
	idleReadSize = 1 << 10
	// spliceTicks is how often per idle period a spliced copy comes back to
	// report its progress to the idle watchdog.
	spliceTicks = 4
	// farewellWait bounds the end of a relay at shutdown: finishing the
	// write to the client under way and writing the goodbye.
	farewellWait = 2 * time.Second
)

// Who ended a relay, in RelayStats.EndedBy and the "closed" log line.
const (
	EndedByClient   = "client"   // the client hung up (or failed) first
	EndedByUpstream = "upstream" // the upstream hung up (or failed) first
	EndedByIdle     = "idle"     // nothing moved either way for the idle time
	EndedByCancel   = "cancel"   // the context was cancelled (hard stop, reload)
	EndedByShutdown = "shutdown" // RelayOptions.Drain closed (graceful shutdown)
)

// relayBufs holds the copy buffers of the relays: a session that waits in
// IDLE for half an hour holds no buffer while nothing moves.
var relayBufs = sync.Pool{New: func() any {
	b := make([]byte, relayBufSize)
	return &b
}}

// RelayStats counts what a relay moved.
type RelayStats struct {
	ClientToUpstream int64
	UpstreamToClient int64
	Duration         time.Duration // from the start of Relay to both directions ending
	EndedBy          string        // EndedByClient, EndedByUpstream, EndedByIdle, EndedByCancel or EndedByShutdown
	Goodbye          bool          // a shutdown ended the relay and the client got the Farewell's goodbye
}

// RelayOptions tune a Relay.
type RelayOptions struct {
	// Idle ends the session after this long without traffic either way;
	// <= 0 means DefaultIdleTimeout.
	Idle time.Duration
	// Drain, when it is closed (the server begins a graceful shutdown; see
	// Conn.Drain), ends the relay at once. Cutting a relayed IMAP or POP3
	// session loses nothing: an IMAP command whose completion the client
	// did not see may or may not have taken effect, as after any broken
	// connection, and a POP3 session that ends without QUIT deletes
	// nothing (RFC 1939 section 6). nil: only ctx and the peers end it.
	Drain <-chan struct{}
	// Farewell, when set, follows the bytes both ways and gives the line
	// the client gets when Drain ends the relay, if one can be written
	// without breaking a response in flight.
	Farewell Farewell
	// Meter counts the relayed bytes (the front passes its Gateway's).
	Meter Meter
}

// Farewell follows a relayed session so that a shutdown can say goodbye to
// the client (IMAP "* BYE", POP3 "-ERR") where that breaks nothing. A front
// implements it with just enough of its protocol to know where responses
// end; the relay stays a byte pump. One value serves one Relay call.
//
// ClientBytes is called from the goroutine that copies the client's bytes,
// before they are written upstream (so a response never arrives before the
// command it answers was seen); UpstreamBytes and Goodbye are called from
// the goroutine that copies towards the client, UpstreamBytes after the
// bytes were written to the client. The two goroutines run concurrently.
type Farewell interface {
	// ClientBytes sees the next bytes the client sent.
	ClientBytes(p []byte)
	// UpstreamBytes sees the next bytes the client was sent.
	UpstreamBytes(p []byte)
	// Goodbye returns the line (with CRLF) to write to the client now, at
	// the end of what it was sent so far, or nil when that could be in the
	// middle of a response, or when the stream could not be followed.
	Goodbye() []byte
}

// Relay carries a logged-in session: it first writes what each side's buffered
// reader already holds to the other side, then copies bytes both ways until
// either side ends, nothing moves for opts.Idle or opts.Drain closes,
// half-closing as each direction ends. It closes neither connection's
// reader before both directions are done, logs one "closed" line with the
// byte counts, and returns them.
// clientBuf and upstreamBuf may be nil when nothing was buffered.
//
// clientBuf and upstreamBuf must read from client and upstream; after their
// buffered bytes are flushed, Relay reads the connections directly. Relay
// clears any deadline the front had set, ends when ctx is done, and closes
// both connections before it returns.
// Between two plain TCP connections the kernel moves the bytes (splice),
// unless opts.Farewell must see them; otherwise each direction copies
// through a pooled buffer. (The upstream is always TLS outside tests.)
//
// When opts.Drain closes, the relay stops reading both sides at once,
// finishes the write to the client under way, writes the Farewell's
// goodbye when it gives one, and closes both connections, all within
// farewellWait.
//
// The bytes are counted on opts.Meter as they move, so a long session shows
// its traffic before it ends.
func Relay(ctx context.Context, log *slog.Logger, client net.Conn, clientBuf *bufio.Reader, upstream net.Conn, upstreamBuf *bufio.Reader, opts RelayOptions) RelayStats {
	r := newRelay(client, upstream, opts, opts.Farewell == nil)
	r.c2u.m, r.u2c.m = opts.Meter, opts.Meter
	return r.run(ctx, log, clientBuf, upstreamBuf)
}

// dirCount counts the bytes of one direction for RelayStats and the metrics.
type dirCount struct {
	n   atomic.Int64
	dir string // ClientToUpstream or UpstreamToClient
	m   Meter  // zero: no metrics
}

func (c *dirCount) add(n int64) {
	c.n.Add(n)
	c.m.relayed(c.dir, n)
}

// relay is one Relay call.
type relay struct {
	client, upstream net.Conn // without *Conn wrappers; set by newRelay
	idle             time.Duration
	drain            <-chan struct{} // RelayOptions.Drain
	bye              Farewell        // RelayOptions.Farewell; nil: no goodbye
	splice           bool            // both are *net.TCPConn: io.Copy splices
	start            time.Time       // set by newRelay; its monotonic clock times activity

	last     atomic.Int64 // nanoseconds since start of the last traffic
	aborted  atomic.Bool  // set before abort's deadlines
	stopping atomic.Bool  // reads are being stopped (drain or abort); set before their deadlines
	draining atomic.Bool  // Drain closed: the directions end at once; set before stopping
	goodbye  atomic.Bool  // the goodbye was written to the client
	c2u, u2c dirCount     // bytes written to the other side; set up by newRelay
	done     chan dirResult

	mu      sync.Mutex
	endedBy string // who ended the session first; set once by setEndedBy
}

// setEndedBy records who ended the session, unless someone already did.
func (r *relay) setEndedBy(by string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.endedBy == "" {
		r.endedBy = by
	}
}

// dirResult is how one direction ended: by names the side that hung up or
// failed; err is nil for a clean end of stream. toClient: it is the
// direction towards the client.
type dirResult struct {
	by       string
	err      error
	toClient bool
}

func newRelay(client, upstream net.Conn, opts RelayOptions, allowSplice bool) *relay {
	idle := opts.Idle
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	r := &relay{
		client:   unwrapConn(client),
		upstream: unwrapConn(upstream),
		idle:     idle,
		drain:    opts.Drain,
		bye:      opts.Farewell,
		start:    time.Now(),
		done:     make(chan dirResult, 2),
	}
	r.c2u.dir, r.u2c.dir = ClientToUpstream, UpstreamToClient
	_, ct := r.client.(*net.TCPConn)
	_, ut := r.upstream.(*net.TCPConn)
	r.splice = allowSplice && ct && ut
	return r
}

func (r *relay) run(ctx context.Context, log *slog.Logger, clientBuf, upstreamBuf *bufio.Reader) RelayStats {
	if log == nil {
		log = slog.Default()
	}
	r.client.SetDeadline(time.Time{})
	r.upstream.SetDeadline(time.Time{})
	go r.clientToUpstream(clientBuf)
	go r.upstreamToClient(upstreamBuf)
	endedBy, err := r.wait(ctx)
	r.client.Close()
	r.upstream.Close()

	st := RelayStats{
		ClientToUpstream: r.c2u.n.Load(),
		UpstreamToClient: r.u2c.n.Load(),
		Duration:         time.Since(r.start),
		EndedBy:          endedBy,
		Goodbye:          r.goodbye.Load(),
	}
	attrs := []slog.Attr{
		slog.Int64("client_to_upstream", st.ClientToUpstream),
		slog.Int64("upstream_to_client", st.UpstreamToClient),
		slog.Duration("duration", st.Duration),
		slog.String("ended_by", st.EndedBy),
	}
	if st.EndedBy == EndedByShutdown {
		attrs = append(attrs, slog.Bool("goodbye", st.Goodbye))
	}
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	// A peer hanging up or resetting is how sessions end: never an error.
	log.LogAttrs(context.Background(), slog.LevelInfo, "closed", attrs...)
	return st
}

// wait runs the idle watchdog until both directions have ended, and returns
// who ended the session and the first failure (nil for clean ends).
func (r *relay) wait(ctx context.Context) (endedBy string, firstErr error) {
	limit := r.idle
	timer := time.NewTimer(limit)
	defer timer.Stop()
	timerC, ctxDone, drainC := timer.C, ctx.Done(), r.drain
	var graceC <-chan time.Time
	for running := 2; running > 0; {
		select {
		case res := <-r.done:
			running--
			if r.draining.Load() {
				// Reads fail by design now. Once the client has been
				// sent what there was and the goodbye, the other
				// direction may be stuck in a write: end it.
				if res.toClient && !r.aborted.Load() {
					r.abort()
				}
				continue
			}
			if res.err != nil && !r.aborted.Load() {
				firstErr = res.err
				r.abort()
			} else if running == 1 && limit > halfClosedIdle {
				limit = halfClosedIdle
				timer.Reset(r.untilIdle(limit))
			}
		case <-timerC:
			if d := r.untilIdle(limit); d > 0 {
				timer.Reset(d)
				continue
			}
			r.setEndedBy(EndedByIdle)
			timerC = nil
			r.abort()
		case <-ctxDone:
			r.setEndedBy(EndedByCancel)
			ctxDone = nil
			r.abort()
		case <-drainC:
			drainC = nil
			if r.aborted.Load() {
				continue
			}
			r.setEndedBy(EndedByShutdown)
			r.stopReads()
			grace := time.NewTimer(farewellWait)
			defer grace.Stop()
			graceC = grace.C
		case <-graceC:
			graceC = nil
			r.abort()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.endedBy, firstErr
}

// touch records traffic now.
func (r *relay) touch() { r.last.Store(int64(time.Since(r.start))) }

// untilIdle returns how long until limit has passed without traffic (<= 0:
// it has).
func (r *relay) untilIdle(limit time.Duration) time.Duration {
	return time.Duration(r.last.Load()) + limit - time.Since(r.start)
}

// abort ends both directions: the deadline unblocks any Read or Write.
func (r *relay) abort() {
	r.aborted.Store(true)
	r.stopping.Store(true)
	now := time.Now()
	r.client.SetDeadline(now)
	r.upstream.SetDeadline(now)
}

// stopReads begins the end of a drained relay: both directions stop
// reading at once, while a write under way may finish (the direction
// towards the client then says goodbye: sayGoodbye).
func (r *relay) stopReads() {
	r.draining.Store(true)
	r.stopping.Store(true)
	now := time.Now()
	r.client.SetReadDeadline(now)
	r.upstream.SetReadDeadline(now)
}

// clientToUpstream carries the client's commands to the upstream.
func (r *relay) clientToUpstream(buf *bufio.Reader) {
	r.done <- r.pipe(r.upstream, r.client, buf, &r.c2u, EndedByClient, EndedByUpstream)
}

// upstreamToClient carries the upstream's responses to the client and, when
// a shutdown ends the relay, the goodbye.
func (r *relay) upstreamToClient(buf *bufio.Reader) {
	res := r.pipe(r.client, r.upstream, buf, &r.u2c, EndedByUpstream, EndedByClient)
	if r.draining.Load() {
		r.sayGoodbye()
	}
	res.toClient = true
	r.done <- res
}

// sayGoodbye writes the Farewell's goodbye to the client, if it gives one.
// It runs in the goroutine that writes to the client, after its last
// write, so the goodbye follows whole writes and nothing follows it: the
// Farewell, which has seen every byte written, says whether the client is
// at the end of a response.
func (r *relay) sayGoodbye() {
	if r.bye == nil || r.aborted.Load() {
		return
	}
	line := r.bye.Goodbye()
	if line == nil {
		return
	}
	r.client.SetWriteDeadline(time.Now().Add(farewellWait))
	if r.aborted.Load() {
		return // abort's deadline may have been overwritten: do not wait
	}
	if _, err := r.client.Write(line); err == nil {
		r.goodbye.Store(true)
		closeWrite(r.client)
	}
}

// see shows the bytes of one direction to the Farewell: the client's
// before they go upstream, the client's share after it was written.
func (r *relay) see(count *dirCount, b []byte, written bool) {
	if r.bye == nil || len(b) == 0 {
		return
	}
	switch {
	case count == &r.c2u && !written:
		r.bye.ClientBytes(b)
	case count == &r.u2c && written:
		r.bye.UpstreamBytes(b)
	}
}

// pipe flushes buf to dst, copies src to dst until src ends, and then
// half-closes dst.
func (r *relay) pipe(dst, src net.Conn, buf *bufio.Reader, count *dirCount, srcName, dstName string) dirResult {
	n, err := r.flushBuffered(dst, buf, count)
	count.add(n)
	if err != nil {
		r.setEndedBy(dstName)
		return dirResult{by: dstName, err: err}
	}
	var res dirResult
	if r.splice {
		res = r.spliceCopy(dst, src, count, srcName, dstName)
	} else {
		res = r.bufferedCopy(dst, src, count, srcName, dstName)
	}
	r.setEndedBy(res.by)
	if res.err == nil {
		closeWrite(dst)
	}
	return res
}

// flushBuffered writes what buf holds to dst and consumes it.
func (r *relay) flushBuffered(dst io.Writer, buf *bufio.Reader, count *dirCount) (int64, error) {
	if buf == nil || buf.Buffered() == 0 {
		return 0, nil
	}
	b, _ := buf.Peek(buf.Buffered()) // cannot fail: the bytes are buffered
	r.see(count, b, false)
	n, err := dst.Write(b)
	r.see(count, b[:n], true)
	buf.Discard(n)
	return int64(n), err
}

// bufferedCopy copies through a pooled buffer, recording traffic as it goes.
// It waits for data with a small buffer of its own and takes a pooled one
// only while data streams, so an idle direction holds idleReadSize bytes.
func (r *relay) bufferedCopy(dst, src net.Conn, count *dirCount, srcName, dstName string) dirResult {
	_, isTLS := src.(*tls.Conn)
	tcp, isTCP := src.(*net.TCPConn)
	var small []byte
	if !isTCP {
		small = make([]byte, idleReadSize)
	}
	for {
		var (
			b    []byte
			bp   *[]byte
			rerr error
		)
		if isTCP {
			// Wait without a buffer, then read what is there.
			if rerr = waitReadable(tcp); rerr == nil {
				bp = relayBufs.Get().(*[]byte)
				var n int
				n, rerr = src.Read(*bp)
				b = (*bp)[:n]
			}
		} else {
			var n int
			n, rerr = src.Read(small)
			b = small[:n]
			if n == len(small) && rerr == nil {
				// More may be buffered in the TLS connection: take it
				// without waiting for the network.
				bp = relayBufs.Get().(*[]byte)
				big := *bp
				copy(big, b)
				n, rerr = r.gather(src, big, n, isTLS)
				b = big[:n]
			}
		}
		if len(b) > 0 && count == &r.c2u && r.draining.Load() {
			// What the client sent after the drain began is not passed
			// on: the client gets the goodbye (or the end) instead, so
			// no command is started upstream after it.
			if bp != nil {
				relayBufs.Put(bp)
			}
			return dirResult{by: srcName, err: os.ErrDeadlineExceeded}
		}
		if len(b) > 0 {
			r.touch()
			r.see(count, b, false)
			w, werr := dst.Write(b)
			count.add(int64(w))
			r.see(count, b[:w], true)
			if werr != nil {
				if bp != nil {
					relayBufs.Put(bp)
				}
				return dirResult{by: dstName, err: werr}
			}
			r.touch()
		}
		if bp != nil {
			relayBufs.Put(bp)
		}
		if rerr == io.EOF {
			return dirResult{by: srcName}
		}
		if rerr != nil {
			return dirResult{by: srcName, err: rerr}
		}
	}
}

// gather appends to b[n:] what src has buffered already (for TLS: the rest
// of the current record and further complete records), without waiting for
// the network, so that one write carries several records.
func (r *relay) gather(src net.Conn, b []byte, n int, isTLS bool) (int, error) {
	src.SetReadDeadline(pastDeadline)
	var err error
	for n < len(b) && !r.stopping.Load() {
		var m int
		m, err = src.Read(b[n:])
		n += m
		if err != nil || m == 0 || !isTLS {
			break
		}
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = nil
	}
	src.SetReadDeadline(time.Time{})
	// abort and stopReads store the flag before their deadline: checking
	// after ours means ours cannot have overwritten it unseen.
	if r.stopping.Load() {
		return n, os.ErrDeadlineExceeded
	}
	return n, err
}

// pastDeadline makes a read return at once with what is buffered.
var pastDeadline = time.Unix(1, 0)

// spliceCopy lets io.Copy move the bytes in the kernel. A read deadline
// brings it back a few times per idle period to report progress.
func (r *relay) spliceCopy(dst, src net.Conn, count *dirCount, srcName, dstName string) dirResult {
	tick := min(r.idle, halfClosedIdle) / spliceTicks
	for {
		src.SetReadDeadline(time.Now().Add(tick))
		// abort and stopReads store the flag before their deadline:
		// checking after ours means ours cannot have overwritten it unseen.
		if r.stopping.Load() {
			return dirResult{by: srcName, err: os.ErrDeadlineExceeded}
		}
		n, err := io.Copy(dst, src)
		if n > 0 {
			count.add(n)
			r.touch()
		}
		switch {
		case err == nil:
			return dirResult{by: srcName}
		case errors.Is(err, os.ErrDeadlineExceeded) && !r.stopping.Load():
			continue
		case errors.Is(err, syscall.EPIPE):
			return dirResult{by: dstName, err: err}
		default:
			return dirResult{by: srcName, err: err}
		}
	}
}

// unwrapConn strips *Conn wrappers, which add no processing, so that plain
// TCP connections are seen as such.
func unwrapConn(c net.Conn) net.Conn {
	for {
		pc, ok := c.(*Conn)
		if !ok {
			return c
		}
		c = pc.Conn
	}
}

// closeWrite half-closes c: the peer reads end of stream while c can still
// be read. For TLS it sends close_notify and then shuts the TCP side down.
func closeWrite(c net.Conn) {
	type closeWriter interface{ CloseWrite() error }
	switch t := c.(type) {
	case *tls.Conn:
		if t.CloseWrite() == nil {
			if cw, ok := t.NetConn().(closeWriter); ok {
				cw.CloseWrite()
			}
		}
	case closeWriter:
		t.CloseWrite()
	}
}
