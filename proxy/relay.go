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
)

// Who ended a relay, in RelayStats.EndedBy and the "closed" log line.
const (
	EndedByClient   = "client"   // the client hung up (or failed) first
	EndedByUpstream = "upstream" // the upstream hung up (or failed) first
	EndedByIdle     = "idle"     // nothing moved either way for the idle time
	EndedByCancel   = "cancel"   // the context was cancelled (shutdown)
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
	EndedBy          string        // EndedByClient, EndedByUpstream, EndedByIdle or EndedByCancel
}

// Relay carries a logged-in session: it first writes what each side's buffered
// reader already holds to the other side, then copies bytes both ways until
// either side ends or nothing moves for idle, half-closing as each direction
// ends. It closes neither connection's reader before both directions are
// done, logs one "closed" line with the byte counts, and returns them.
// clientBuf and upstreamBuf may be nil when nothing was buffered.
//
// clientBuf and upstreamBuf must read from client and upstream; after their
// buffered bytes are flushed, Relay reads the connections directly. Relay
// clears any deadline the front had set, ends when ctx is done, and closes
// both connections before it returns. idle <= 0 means DefaultIdleTimeout.
// Between two plain TCP connections the kernel moves the bytes (splice);
// otherwise each direction copies through a pooled buffer.
//
// The bytes are counted on the metrics of ctx's connection (WithMetrics) as
// they move, so a long session shows its traffic before it ends.
func Relay(ctx context.Context, log *slog.Logger, client net.Conn, clientBuf *bufio.Reader, upstream net.Conn, upstreamBuf *bufio.Reader, idle time.Duration) RelayStats {
	r := newRelay(client, upstream, idle, true)
	m := metricsFrom(ctx)
	r.c2u.m, r.u2c.m = m, m
	return r.run(ctx, log, clientBuf, upstreamBuf)
}

// dirCount counts the bytes of one direction for RelayStats and the metrics.
type dirCount struct {
	n   atomic.Int64
	dir string      // ClientToUpstream or UpstreamToClient
	m   connMetrics // zero: no metrics
}

func (c *dirCount) add(n int64) {
	c.n.Add(n)
	c.m.relayed(c.dir, n)
}

// relay is one Relay call.
type relay struct {
	client, upstream net.Conn // without *Conn wrappers; set by newRelay
	idle             time.Duration
	splice           bool      // both are *net.TCPConn: io.Copy splices
	start            time.Time // set by newRelay; its monotonic clock times activity

	last     atomic.Int64 // nanoseconds since start of the last traffic
	aborted  atomic.Bool  // set before abort's deadlines
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
// failed; err is nil for a clean end of stream.
type dirResult struct {
	by  string
	err error
}

func newRelay(client, upstream net.Conn, idle time.Duration, allowSplice bool) *relay {
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	r := &relay{
		client:   unwrapConn(client),
		upstream: unwrapConn(upstream),
		idle:     idle,
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
	}
	attrs := []slog.Attr{
		slog.Int64("client_to_upstream", st.ClientToUpstream),
		slog.Int64("upstream_to_client", st.UpstreamToClient),
		slog.Duration("duration", st.Duration),
		slog.String("ended_by", st.EndedBy),
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
	timerC, ctxDone := timer.C, ctx.Done()
	for running := 2; running > 0; {
		select {
		case res := <-r.done:
			running--
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
	now := time.Now()
	r.client.SetDeadline(now)
	r.upstream.SetDeadline(now)
}

// clientToUpstream carries the client's commands to the upstream.
func (r *relay) clientToUpstream(buf *bufio.Reader) {
	r.done <- r.pipe(r.upstream, r.client, buf, &r.c2u, EndedByClient, EndedByUpstream)
}

// upstreamToClient carries the upstream's responses to the client.
func (r *relay) upstreamToClient(buf *bufio.Reader) {
	r.done <- r.pipe(r.client, r.upstream, buf, &r.u2c, EndedByUpstream, EndedByClient)
}

// pipe flushes buf to dst, copies src to dst until src ends, and then
// half-closes dst.
func (r *relay) pipe(dst, src net.Conn, buf *bufio.Reader, count *dirCount, srcName, dstName string) dirResult {
	n, err := flushBuffered(dst, buf)
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
func flushBuffered(dst io.Writer, buf *bufio.Reader) (int64, error) {
	if buf == nil || buf.Buffered() == 0 {
		return 0, nil
	}
	b, _ := buf.Peek(buf.Buffered()) // cannot fail: the bytes are buffered
	n, err := dst.Write(b)
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
		if len(b) > 0 {
			r.touch()
			w, werr := dst.Write(b)
			count.add(int64(w))
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
	for n < len(b) && !r.aborted.Load() {
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
	// abort stores the flag before its deadline: checking after ours
	// means ours cannot have overwritten it unseen.
	if r.aborted.Load() {
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
		// abort stores the flag before its deadline: checking after ours
		// means ours cannot have overwritten it unseen.
		if r.aborted.Load() {
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
		case errors.Is(err, os.ErrDeadlineExceeded) && !r.aborted.Load():
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
