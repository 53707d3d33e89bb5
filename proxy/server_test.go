package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testHandler is a Handler whose sessions a test drives through channels.
type testHandler struct {
	serve   func(ctx context.Context, c *Conn) // the session; nil: echo lines until EOF
	refused atomic.Int32
	conns   chan *Conn // each accepted connection, when set
}

func (h *testHandler) ServeConn(ctx context.Context, c *Conn) {
	if h.conns != nil {
		h.conns <- c
	}
	if h.serve != nil {
		h.serve(ctx, c)
		return
	}
	io.Copy(c, c)
}

func (h *testHandler) Refuse(c net.Conn) {
	h.refused.Add(1)
	io.WriteString(c, "BUSY\r\n")
}

// startServer serves s on a loopback listener until the test ends; it fails
// the test on any recovered panic unless the test expects them.
func startServer(t *testing.T, s *Server, allowPanics bool) (addr string, served chan error) {
	t.Helper()
	if s.Log == nil {
		s.Log = slog.New(slog.NewJSONHandler(new(logBuffer), nil))
	}
	if s.OnPanic == nil && !allowPanics {
		s.OnPanic = func(v any) { t.Errorf("recovered panic: %v", v) }
	}
	ln, err := Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served = make(chan error, 1)
	go func() { served <- s.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // force at once
		s.Shutdown(ctx)
	})
	return ln.Addr().String(), served
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// echo writes line and checks it comes back.
func echo(t *testing.T, c net.Conn, br *bufio.Reader, line string) {
	t.Helper()
	io.WriteString(c, line)
	if got, err := br.ReadString('\n'); got != line {
		t.Fatalf("echo = %q, %v; want %q", got, err, line)
	}
}

func TestServerConnIDsAndLogger(t *testing.T) {
	ids := new(IDSource)
	logs := new(logBuffer)
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h1 := &testHandler{conns: make(chan *Conn, 10)}
	h2 := &testHandler{conns: make(chan *Conn, 10)}
	addr1, _ := startServer(t, &Server{Protocol: "imap", Handler: h1, IDs: ids, Log: log}, false)
	addr2, _ := startServer(t, &Server{Protocol: "pop3", Handler: h2, IDs: ids, Log: log}, false)

	var got []uint64
	for i := range 6 {
		addr, h := addr1, h1
		if i%2 == 1 {
			addr, h = addr2, h2
		}
		c := dial(t, addr)
		sc := <-h.conns
		if sc.Remote != netip.MustParseAddr("127.0.0.1") || sc.Log == nil || sc.Drain == nil {
			t.Errorf("conn %d: remote %v, log %v, drain %v", sc.ID, sc.Remote, sc.Log, sc.Drain)
		}
		if sc.NetConn() != sc.Conn {
			t.Error("NetConn does not return the accepted connection")
		}
		sc.Log.Info("hello from the handler")
		got = append(got, sc.ID)
		c.Close()
	}
	for i := range got {
		if i == 0 && got[i] != 1 || i > 0 && got[i] <= got[i-1] {
			t.Errorf("ids = %v, want 1.. strictly increasing across both servers", got)
			break
		}
	}
	var lines int
	for _, r := range logs.records(t) {
		if r["msg"] != "hello from the handler" {
			continue
		}
		lines++
		if r["cid"] == nil || (r["proto"] != "imap" && r["proto"] != "pop3") || !strings.HasPrefix(fmt.Sprint(r["remote"]), "127.0.0.1:") {
			t.Errorf("log record without cid, proto, remote: %v", r)
		}
	}
	if lines != 6 {
		t.Errorf("%d handler log lines, want 6", lines)
	}
}

func TestIDSourceConcurrent(t *testing.T) {
	var ids IDSource
	const workers, each = 8, 1000
	seen := make([][]uint64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				seen[w] = append(seen[w], ids.Next())
			}
		}()
	}
	wg.Wait()
	all := slices.Concat(seen...)
	slices.Sort(all)
	for i, id := range all {
		if id != uint64(i+1) {
			t.Fatalf("ids are not 1..%d without gaps or repeats: at %d got %d", len(all), i, id)
		}
	}
	for w := range seen {
		if !slices.IsSorted(seen[w]) {
			t.Errorf("worker %d saw ids going back", w)
		}
	}
}

func TestServerLimitRefuses(t *testing.T) {
	release := make(chan struct{})
	h := &testHandler{conns: make(chan *Conn, 10), serve: func(ctx context.Context, c *Conn) {
		io.WriteString(c, "HELLO\r\n")
		<-release
	}}
	s := &Server{Protocol: "imap", Handler: h, MaxConns: 2}
	addr, _ := startServer(t, s, false)
	var held []net.Conn
	for range 2 {
		c := dial(t, addr)
		<-h.conns
		if line, _ := bufio.NewReader(c).ReadString('\n'); line != "HELLO\r\n" {
			t.Fatalf("greeting %q", line)
		}
		held = append(held, c)
	}
	// Over the limit: the "too busy" reply, then the end; accept goes on.
	for range 3 {
		c := dial(t, addr)
		b, err := io.ReadAll(c)
		if string(b) != "BUSY\r\n" || err != nil {
			t.Errorf("refused connection read %q, %v; want BUSY then EOF", b, err)
		}
	}
	if n := h.refused.Load(); n != 3 {
		t.Errorf("Refuse called %d times, want 3", n)
	}
	if n := s.ActiveConns(); n != 2 {
		t.Errorf("ActiveConns = %d, want 2", n)
	}
	// Ending the sessions frees their slots (before the clients see the end).
	close(release)
	for _, c := range held {
		io.ReadAll(c)
	}
	if n := s.ActiveConns(); n != 0 {
		t.Errorf("ActiveConns = %d after the sessions ended", n)
	}
	dial(t, addr)
	<-h.conns
}

func TestServerRecoversPanics(t *testing.T) {
	logs := new(logBuffer)
	var panics atomic.Int32
	h := &testHandler{serve: func(ctx context.Context, c *Conn) {
		br := bufio.NewReader(c)
		line, _ := br.ReadString('\n')
		if line == "PANIC\r\n" {
			panic("handler bug")
		}
		io.WriteString(c, line)
	}}
	s := &Server{Protocol: "smtp", Handler: h, Log: slog.New(slog.NewJSONHandler(logs, nil)),
		OnPanic: func(v any) {
			if v != "handler bug" {
				t.Errorf("OnPanic(%v)", v)
			}
			panics.Add(1)
		}}
	addr, _ := startServer(t, s, true)

	c := dial(t, addr)
	io.WriteString(c, "PANIC\r\n")
	if b, err := io.ReadAll(c); len(b) != 0 || err != nil {
		t.Errorf("panicking session read %q, %v; want a closed connection", b, err)
	}
	// OnPanic runs before the connection is closed.
	if panics.Load() != 1 {
		t.Errorf("OnPanic called %d times, want 1", panics.Load())
	}
	var found bool
	for _, r := range logs.records(t) {
		if r["level"] == "ERROR" && strings.Contains(fmt.Sprint(r["msg"]), "panic") {
			found = strings.Contains(fmt.Sprint(r["stack"]), "TestServerRecoversPanics") && r["cid"] != nil
		}
	}
	if !found {
		t.Error("no ERROR log line with the panic's stack and cid")
	}
	// The server still serves.
	c2 := dial(t, addr)
	echo(t, c2, bufio.NewReader(c2), "NOOP\r\n")
}

func TestServerRecoversRefusePanics(t *testing.T) {
	var panics atomic.Int32
	release := make(chan struct{})
	defer close(release)
	h := &panicRefuser{testHandler{conns: make(chan *Conn, 1), serve: func(context.Context, *Conn) { <-release }}}
	s := &Server{Protocol: "imap", Handler: h, MaxConns: 1, OnPanic: func(any) { panics.Add(1) }}
	addr, _ := startServer(t, s, true)
	dial(t, addr)
	<-h.conns
	if b, _ := io.ReadAll(dial(t, addr)); len(b) != 0 {
		t.Errorf("read %q from a refusal that panicked", b)
	}
	// OnPanic runs before the connection is closed.
	if panics.Load() != 1 {
		t.Errorf("OnPanic called %d times, want 1", panics.Load())
	}
}

type panicRefuser struct{ testHandler }

func (*panicRefuser) Refuse(net.Conn) { panic("refuse bug") }

func TestServerShutdownDrains(t *testing.T) {
	release := make(chan struct{})
	drained := make(chan struct{})
	h := &testHandler{conns: make(chan *Conn, 1), serve: func(ctx context.Context, c *Conn) {
		<-c.Drain
		close(drained)
		<-release // finishing its last command
		io.WriteString(c, "* BYE shutting down\r\n")
	}}
	s := &Server{Protocol: "imap", Handler: h}
	addr, served := startServer(t, s, false)
	c := dial(t, addr)
	<-h.conns

	shutdown := make(chan error, 1)
	go func() { shutdown <- s.Shutdown(context.Background()) }()
	<-drained
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve returned %v, want ErrServerClosed", err)
	}
	if c2, err := net.Dial("tcp", addr); err == nil {
		c2.Close()
		t.Error("a new connection was accepted during shutdown")
	}
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned %v while a session was still draining", err)
	default:
	}
	close(release)
	if err := <-shutdown; err != nil {
		t.Errorf("Shutdown = %v, want nil after a clean drain", err)
	}
	if b, _ := io.ReadAll(c); string(b) != "* BYE shutting down\r\n" {
		t.Errorf("client read %q", b)
	}
	// Serving again after shutdown is refused.
	ln, _ := Listen(context.Background(), "127.0.0.1:0")
	if err := s.Serve(context.Background(), ln); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Shutdown = %v", err)
	}
}

func TestServerShutdownForces(t *testing.T) {
	ctxErr := make(chan error, 1)
	h := &testHandler{conns: make(chan *Conn, 1), serve: func(ctx context.Context, c *Conn) {
		// Ignores Drain; blocks in Read until the server forces it.
		io.Copy(io.Discard, c)
		ctxErr <- ctx.Err()
	}}
	s := &Server{Protocol: "pop3", Handler: h}
	addr, served := startServer(t, s, false)
	c := dial(t, addr)
	<-h.conns

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := s.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "closed 1 pop3 sessions") {
		t.Errorf("Shutdown = %v, want a forced close after the deadline", err)
	}
	if err := <-ctxErr; err == nil {
		t.Error("the forced session's context was not cancelled")
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve returned %v", err)
	}
	if _, err := io.ReadAll(c); err != nil && !isConnEnd(err) {
		t.Errorf("client read: %v", err)
	}
	if n := s.ActiveConns(); n != 0 {
		t.Errorf("ActiveConns = %d after Shutdown", n)
	}
}

func TestServerContextCancelStops(t *testing.T) {
	ended := make(chan struct{})
	h := &testHandler{conns: make(chan *Conn, 1), serve: func(ctx context.Context, c *Conn) {
		// Relies on the server tying ctx to the connection's deadline.
		c.Read(make([]byte, 1))
		close(ended)
	}}
	s := &Server{Protocol: "imap", Handler: h, OnPanic: func(v any) { t.Errorf("panic %v", v) }}
	ln, err := Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	dial(t, ln.Addr().String())
	<-h.conns
	cancel()
	<-ended
	if err := <-served; !errors.Is(err, context.Canceled) {
		t.Errorf("Serve = %v, want context.Canceled", err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown after cancel = %v", err)
	}
}

func TestListen(t *testing.T) {
	ln, err := Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tests := []struct {
		addr, want string
	}{
		{ln.Addr().String(), "already listens there"},
		{"127.0.0.1:notaport", "check the listen address"},
	}
	for _, tt := range tests {
		if l2, err := Listen(context.Background(), tt.addr); err == nil {
			l2.Close()
			t.Errorf("Listen(%q) succeeded", tt.addr)
		} else if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Listen(%q) = %v, want %q", tt.addr, err, tt.want)
		}
	}
}

// blockingRefuser's Refuse waits until released: a flood of refusals must
// neither block accept nor pile up without bound.
type blockingRefuser struct {
	testHandler
	entered chan struct{}
	release chan struct{}
}

func (h *blockingRefuser) Refuse(c net.Conn) {
	h.entered <- struct{}{}
	<-h.release
	io.WriteString(c, "BUSY\r\n")
}

func TestServerRefusalsBounded(t *testing.T) {
	hold := make(chan struct{})
	h := &blockingRefuser{
		testHandler: testHandler{conns: make(chan *Conn, 1), serve: func(context.Context, *Conn) { <-hold }},
		entered:     make(chan struct{}, maxRefusing),
		release:     make(chan struct{}),
	}
	defer close(hold)
	addr, _ := startServer(t, &Server{Protocol: "imap", Handler: h, MaxConns: 1}, false)
	dial(t, addr)
	<-h.conns
	var waiting []net.Conn
	for range maxRefusing {
		waiting = append(waiting, dial(t, addr))
		<-h.entered
	}
	// Every refusal slot is taken: the next one is closed without a reply,
	// and at once, not after a refusal ends.
	if b, err := io.ReadAll(dial(t, addr)); len(b) != 0 || err != nil {
		t.Errorf("excess refusal read %q, %v; want an immediate close", b, err)
	}
	close(h.release)
	for _, c := range waiting {
		if b, _ := io.ReadAll(c); string(b) != "BUSY\r\n" {
			t.Errorf("refused connection read %q", b)
		}
	}
}

// TestServerRetire: Retire stops accepting but leaves the sessions alone
// (no drain), until a later Shutdown drains them.
func TestServerRetire(t *testing.T) {
	h := &testHandler{conns: make(chan *Conn, 1), serve: func(ctx context.Context, c *Conn) {
		<-c.Drain
		io.WriteString(c, "* BYE shutting down\r\n")
	}}
	s := &Server{Protocol: "imap", Handler: h}
	addr, served := startServer(t, s, false)
	c := dial(t, addr)
	conn := <-h.conns

	retired := make(chan error, 1)
	go func() { retired <- s.Retire(context.Background()) }()
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve returned %v, want ErrServerClosed", err)
	}
	select {
	case <-conn.Drain:
		t.Fatal("Retire began the drain")
	case err := <-retired:
		t.Fatalf("Retire returned %v with a session open", err)
	default:
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown after Retire = %v", err)
	}
	if err := <-retired; err != nil {
		t.Errorf("Retire = %v once the session ended", err)
	}
	if b, _ := io.ReadAll(c); string(b) != "* BYE shutting down\r\n" {
		t.Errorf("client read %q", b)
	}
}
