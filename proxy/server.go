package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Limits and timings of a Server.
const (
	// DefaultMaxConns bounds concurrent client connections of a Server whose
	// MaxConns is zero.
	DefaultMaxConns = 1000
	// refuseTimeout bounds writing the "too busy" reply to a connection over
	// the limit, so a client that does not read cannot hold a goroutine.
	refuseTimeout = 5 * time.Second
	// maxRefusing bounds connections being refused at once; beyond it an
	// excess connection is closed without a reply.
	maxRefusing = 64
	// forceWait bounds how long Shutdown waits, after force-closing the
	// remaining connections, for their handlers to return.
	forceWait = 5 * time.Second
	// refuseLogEvery spaces the warnings about refused connections, so a
	// flood of connections does not flood the log.
	refuseLogEvery = 10 * time.Second
	// acceptBackoffMin and acceptBackoffMax bound the pause after a temporary
	// accept error (for example too many open files).
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// ErrServerClosed is returned by Serve after Shutdown was called.
var ErrServerClosed = errors.New("proxy: server closed")

// Handler serves one protocol on accepted connections (each front implements it).
type Handler interface {
	// ServeConn runs a whole client session and returns when it has ended.
	// The caller closes c afterwards.
	ServeConn(ctx context.Context, c *Conn)
	// Refuse writes the protocol's "too busy" reply to a connection accepted
	// over the listener's limit; the caller closes it right after.
	Refuse(c net.Conn)
}

// Conn is an accepted client connection with its id and logger. A front
// that upgrades the session to TLS wraps Conn in a variable of its own and
// leaves the Conn field as accepted (the Server closes it at shutdown).
type Conn struct {
	net.Conn
	ID     uint64       // monotonic per process, set at accept
	Remote netip.Addr   // client address (unmapped), set at accept
	Log    *slog.Logger // carries cid, proto, remote
	// Drain is closed when the server begins a graceful shutdown. A front
	// ends at once what it can end without losing anything: a session that
	// has not logged in yet (with its protocol's goodbye; OnDrain wakes a
	// waiting read) and a relayed IMAP or POP3 session (RelayOptions.Drain).
	// Only work whose end would lose something, such as an SMTP transaction
	// under way, goes on until the drain time is up.
	Drain <-chan struct{}

	// cancel ends the context passed to ServeConn; set at accept.
	cancel context.CancelFunc
	// trace turns on Traced; set at accept from Server.Trace.
	trace bool
}

// NetConn returns the connection Conn wraps.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// OnDrain arranges for f to run in a goroutine of its own when Drain closes
// (at once when it has closed already). Calling stop prevents that: when
// stop returns, f has either finished or will never run; stop reports
// whether it prevented f. Typically f sets a past read deadline so that a
// session waiting for its client ends now.
func (c *Conn) OnDrain(f func()) (stop func() bool) {
	if c.Drain == nil {
		return func() bool { return true }
	}
	var (
		mu      sync.Mutex
		stopped bool
		ran     bool
	)
	quit := make(chan struct{})
	go func() {
		select {
		case <-c.Drain:
		case <-quit:
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			ran = true
			f()
		}
	}()
	var once sync.Once
	return func() bool {
		mu.Lock()
		stopped = true
		prevented := !ran
		mu.Unlock()
		once.Do(func() { close(quit) })
		return prevented
	}
}

// IDSource hands out connection ids: one per process, shared by every Server,
// so ids are unique and increasing across all listeners. The zero value is
// ready to use.
type IDSource struct {
	last atomic.Uint64
}

// Next returns the next id (the first is 1).
func (s *IDSource) Next() uint64 { return s.last.Add(1) }

// Server accepts client connections for one protocol front and runs its
// Handler on each, with a connection id, a per-connection logger, a limit on
// concurrent connections, panic recovery and a graceful shutdown.
// Set its fields before the first Serve and do not change them afterwards.
type Server struct {
	Protocol string       // "imap", "pop3" or "smtp"; logged as proto
	Handler  Handler      // the protocol front
	MaxConns int          // concurrent connections; 0 means DefaultMaxConns
	Log      *slog.Logger // nil: slog.Default()
	IDs      *IDSource    // shared by the process's servers; nil: a private one
	// OnPanic, when set, is called with the value of every panic recovered
	// from the Handler (after it was logged); tests use it to fail.
	OnPanic func(v any)
	// Metrics, when set, counts the connections of this server opened,
	// closed and refused over MaxConns. Logins, relayed bytes and upstream
	// latencies are counted on the Meter of the fronts' Gateway.
	Metrics Metrics
	// Trace turns on the protocol trace of the pre-auth dialogue and the
	// upstream login (see Conn.Traced); it logs at DEBUG, so the logger
	// must be at DEBUG too.
	Trace bool

	refusedN   atomic.Int64 // connections refused since the last warning
	refusedLog atomic.Int64 // unix nanoseconds of the last warning

	initOnce  sync.Once
	ids       *IDSource     // IDs or a private source; set by init
	drain     chan struct{} // closed by Shutdown; set by init
	drainOnce sync.Once     // closes drain
	refusing  chan struct{} // semaphore of refusals in flight; set by init

	mu        sync.Mutex
	closing   bool                      // set by Shutdown and Retire
	listeners map[net.Listener]struct{} // open listeners of running Serve calls
	conns     map[*Conn]struct{}        // live connections
	idle      chan struct{}             // closed when conns becomes empty during shutdown
	wg        sync.WaitGroup            // connection goroutines
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.ids = s.IDs
		if s.ids == nil {
			s.ids = new(IDSource)
		}
		s.drain = make(chan struct{})
		s.refusing = make(chan struct{}, maxRefusing)
		s.listeners = make(map[net.Listener]struct{})
		s.conns = make(map[*Conn]struct{})
	})
}

func (s *Server) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

func (s *Server) maxConns() int {
	if s.MaxConns > 0 {
		return s.MaxConns
	}
	return DefaultMaxConns
}

// Serve accepts connections on ln until Shutdown is called (it then returns
// ErrServerClosed), ctx is cancelled (it returns ctx.Err()) or ln fails.
// Cancelling ctx is a hard stop: every connection's context is derived from
// it, so each session ends at once (Shutdown then waits for them). Serve
// closes ln when it returns. A Server may serve several listeners at once.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.init()
	if !s.trackListener(ln) {
		ln.Close()
		return ErrServerClosed
	}
	defer s.untrackListener(ln)
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	backoff := time.Duration(0)
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosing() {
				return ErrServerClosed
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporaryAccept(err) {
				backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
				s.logger().Warn("accepting connection failed, retrying", "proto", s.Protocol, "err", err, "retry_in", backoff)
				if !sleepCtx(ctx, backoff) {
					return ctx.Err()
				}
				continue
			}
			return fmt.Errorf("accepting %s connections on %s: %w", s.Protocol, ln.Addr(), err)
		}
		backoff = 0
		s.accepted(ctx, nc)
	}
}

// accepted starts serving nc, or refuses it when over the limit or closing.
func (s *Server) accepted(ctx context.Context, nc net.Conn) {
	connCtx, cancelCause := context.WithCancelCause(ctx)
	cancel := func() { cancelCause(nil) }
	c := s.newConn(nc, cancel)
	// Sessions.Close ends a logged-in session through this scope.
	connCtx = withConnScope(connCtx, cancelCause, c.Log)
	if ok, full := s.trackConn(c); !ok {
		cancel()
		if full {
			s.countConn(Metrics.ConnRefused)
			s.refuse(c)
		} else {
			nc.Close()
		}
		return
	}
	s.countConn(Metrics.ConnOpened)
	go s.serveConn(connCtx, c)
}

// newConn wraps nc with an id, its remote address and a logger.
func (s *Server) newConn(nc net.Conn, cancel context.CancelFunc) *Conn {
	id := s.ids.Next()
	var remote netip.Addr
	remoteStr := ""
	if ra := nc.RemoteAddr(); ra != nil {
		remoteStr = ra.String()
		if ta, ok := ra.(*net.TCPAddr); ok {
			remote = ta.AddrPort().Addr().Unmap()
		}
	}
	c := &Conn{
		Conn:   nc,
		ID:     id,
		Remote: remote,
		Log:    s.logger().With("cid", id, "proto", s.Protocol, "remote", remoteStr),
		Drain:  s.drain,
		cancel: cancel,
	}
	c.trace = s.Trace && c.Log.Enabled(context.Background(), slog.LevelDebug)
	return c
}

// serveConn runs the handler on c with panic recovery and closes c. ctx is
// c's own context, cancelled by c.cancel.
func (s *Server) serveConn(ctx context.Context, c *Conn) {
	defer s.wg.Done()
	// A cancelled context does not unblock a Read: a deadline does.
	stop := context.AfterFunc(ctx, func() { c.Conn.SetDeadline(time.Now()) })
	defer func() {
		stop()
		c.cancel()
		// Untracked before the close, so a client that sees the end of
		// its connection finds the slot free.
		s.untrackConn(c)
		c.Conn.Close()
		s.countConn(Metrics.ConnClosed)
	}()
	defer s.recoverPanic(c.Log)
	c.Log.Debug("connection accepted")
	s.Handler.ServeConn(ctx, c)
}

// countConn calls one of the connection counters of s.Metrics, if any.
func (s *Server) countConn(count func(m Metrics, protocol string)) {
	if s.Metrics != nil {
		count(s.Metrics, s.Protocol)
	}
}

// recoverPanic is deferred at every connection boundary: it logs a panic with
// its stack at ERROR and reports it to OnPanic.
func (s *Server) recoverPanic(log *slog.Logger) {
	v := recover()
	if v == nil {
		return
	}
	log.Error("panic serving connection, closing it", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
	if s.OnPanic != nil {
		s.OnPanic(v)
	}
}

// refuse sends the handler's "too busy" reply in the background (accept
// must not wait for a slow client) and closes the connection.
func (s *Server) refuse(c *Conn) {
	s.logRefusal(c)
	select {
	case s.refusing <- struct{}{}:
	default:
		c.Conn.Close()
		return
	}
	go func() {
		defer func() { <-s.refusing }()
		defer c.Conn.Close()
		defer s.recoverPanic(c.Log)
		c.Conn.SetDeadline(time.Now().Add(refuseTimeout))
		s.Handler.Refuse(c.Conn)
	}()
}

// logRefusal warns about refused connections, at most once per
// refuseLogEvery, with the number refused since the previous warning.
func (s *Server) logRefusal(c *Conn) {
	n := s.refusedN.Add(1)
	now := time.Now().UnixNano()
	last := s.refusedLog.Load()
	if now-last < int64(refuseLogEvery) || !s.refusedLog.CompareAndSwap(last, now) {
		return
	}
	s.refusedN.Add(-n)
	c.Log.Warn("too many connections, refusing", "max_conns", s.maxConns(), "refused", n)
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

func (s *Server) trackListener(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.listeners[ln] = struct{}{}
	return true
}

func (s *Server) untrackListener(ln net.Listener) {
	s.mu.Lock()
	delete(s.listeners, ln)
	s.mu.Unlock()
	ln.Close()
}

// trackConn registers c; ok is false when the server is closing or full
// (full says which).
func (s *Server) trackConn(c *Conn) (ok, full bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false, false
	}
	if len(s.conns) >= s.maxConns() {
		return false, true
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true, false
}

func (s *Server) untrackConn(c *Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	if len(s.conns) == 0 && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
}

// ActiveConns returns the number of connections being served.
func (s *Server) ActiveConns() int {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Shutdown stops the server in two phases. First it closes the listeners (so
// Serve returns ErrServerClosed) and closes Conn.Drain, which ends at once
// every session whose end loses nothing (see Conn.Drain), then waits for
// the sessions to end until ctx is done. Then it cancels the remaining
// sessions' contexts and closes their connections, and waits briefly for
// their handlers to return. It returns nil when every session ended within
// ctx, else an error wrapping ctx.Err(). It may follow Retire.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.stop(ctx, true)
}

// Retire is Shutdown without the drain: the server stops accepting, and
// its sessions go on until they end by themselves (a configuration reload
// that removes a listener must not cut its sessions) or until ctx is done.
// A later Shutdown drains what is left.
func (s *Server) Retire(ctx context.Context) error {
	return s.stop(ctx, false)
}

// stop is Shutdown, or Retire when drain is false.
func (s *Server) stop(ctx context.Context, drain bool) error {
	s.init()
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	var idle chan struct{}
	if len(s.conns) > 0 {
		if s.idle == nil {
			s.idle = make(chan struct{})
		}
		idle = s.idle
	}
	s.mu.Unlock()
	if drain {
		s.drainOnce.Do(func() { close(s.drain) })
	}
	if idle == nil {
		s.wg.Wait()
		return nil
	}
	select {
	case <-idle:
		s.wg.Wait()
		return nil
	case <-ctx.Done():
	}
	n := s.forceClose()
	s.logger().Warn("drain time is up, closing remaining sessions", "proto", s.Protocol, "sessions", n)
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(forceWait):
		return fmt.Errorf("closing %d %s sessions: handlers did not return: %w", n, s.Protocol, ctx.Err())
	}
	return fmt.Errorf("closed %d %s sessions that were still open after the drain time: %w", n, s.Protocol, ctx.Err())
}

// forceClose cancels and closes every live connection and returns how many.
func (s *Server) forceClose() int {
	s.mu.Lock()
	conns := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.cancel()
		c.Conn.Close()
	}
	return len(conns)
}

// sleepCtx waits for d or until ctx is done; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
