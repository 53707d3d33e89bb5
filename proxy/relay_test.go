package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/testkit"
)

// Relay test modes: the kernel path, the buffered path over plain TCP, and
// TLS on both sides (buffered, with close_notify half-closes).
const (
	modeSplice   = "splice"
	modeBuffered = "buffered"
	modeTLS      = "tls"
)

var relayModes = []string{modeSplice, modeBuffered, modeTLS}

// relayEnv is a relay between two peers: clientPeer talks to client (the
// proxy's accepted side), upstreamPeer to upstream (the proxy's dialled side).
type relayEnv struct {
	clientPeer, client, upstream, upstreamPeer net.Conn
	logs                                       *logBuffer
	result                                     chan RelayStats
	splice                                     bool
}

func newRelayEnv(t testing.TB, mode string) *relayEnv {
	t.Helper()
	c, cp := testkit.TCPPair(t)
	up, u := testkit.TCPPair(t)
	e := &relayEnv{clientPeer: cp, client: c, upstream: u, upstreamPeer: up, logs: new(logBuffer),
		result: make(chan RelayStats, 1), splice: mode == modeSplice}
	if mode == modeTLS {
		ca := testkit.NewCA(t)
		srv := &tls.Config{Certificates: []tls.Certificate{ca.Leaf(t)}}
		cli := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}
		e.clientPeer, e.client = tlsPair(t, tls.Client(cp, cli), tls.Server(c, srv))
		e.upstream, e.upstreamPeer = tlsPair(t, tls.Client(u, cli), tls.Server(up, srv))
	}
	return e
}

// tlsPair completes both handshakes.
func tlsPair(t testing.TB, cli, srv *tls.Conn) (*tls.Conn, *tls.Conn) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- srv.Handshake() }()
	if err := cli.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return cli, srv
}

// start runs the relay in the background.
func (e *relayEnv) start(ctx context.Context, cbuf, ubuf *bufio.Reader, idle time.Duration) {
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := newRelay(e.client, e.upstream, RelayOptions{Idle: idle}, e.splice)
	go func() { e.result <- r.run(ctx, log, cbuf, ubuf) }()
}

// wait returns the relay's result.
func (e *relayEnv) wait(t testing.TB) RelayStats {
	t.Helper()
	select {
	case st := <-e.result:
		return st
	case <-time.After(20 * time.Second):
		t.Fatal("relay did not end")
		return RelayStats{}
	}
}

// logBuffer collects JSON log lines safely from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// records returns the decoded log records.
func (b *logBuffer) records(t testing.TB) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// closedLine returns the relay's "closed" record, checking it is the only one
// and logged at INFO.
func (e *relayEnv) closedLine(t testing.TB) map[string]any {
	t.Helper()
	var found map[string]any
	for _, r := range e.logs.records(t) {
		if r["level"] == "ERROR" {
			t.Errorf("relay logged an error: %v", r)
		}
		if r["msg"] == "closed" {
			if found != nil {
				t.Errorf("two closed lines")
			}
			found = r
		}
	}
	if found == nil {
		t.Fatal("no closed line")
	}
	if found["level"] != "INFO" {
		t.Errorf("closed line level = %v", found["level"])
	}
	return found
}

// readN reads exactly n bytes from c.
func readN(t testing.TB, c net.Conn, n int) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("reading %d bytes: %v (got %q)", n, err, b)
	}
	return string(b)
}

// expectEOF checks that c reads end of stream.
func expectEOF(t testing.TB, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 1)
	if n, err := c.Read(b); err != io.EOF {
		t.Fatalf("read = %d, %v; want EOF", n, err)
	}
}

// halfClose shuts down c's writing side.
func halfClose(t testing.TB, c net.Conn) {
	t.Helper()
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
}

func TestRelayFlushesBufferedBytesFirst(t *testing.T) {
	for _, mode := range relayModes {
		t.Run(mode, func(t *testing.T) {
			e := newRelayEnv(t, mode)
			// The client pipelines a LOGIN and a SELECT; the front reads the
			// LOGIN line, so the SELECT sits in its buffered reader.
			io.WriteString(e.clientPeer, "a LOGIN u p\r\nb SELECT INBOX\r\n")
			cbuf := bufio.NewReader(e.client)
			if line, _ := cbuf.ReadString('\n'); line != "a LOGIN u p\r\n" {
				t.Fatalf("front read %q", line)
			}
			// The upstream answers the login and sends untagged data at once.
			io.WriteString(e.upstreamPeer, "a OK logged in\r\n* 3 EXISTS\r\n")
			ubuf := bufio.NewReader(e.upstream)
			if line, _ := ubuf.ReadString('\n'); line != "a OK logged in\r\n" {
				t.Fatalf("front read %q", line)
			}
			// More bytes arrive after the handoff, still in the kernel.
			io.WriteString(e.clientPeer, "c NOOP\r\n")
			io.WriteString(e.upstreamPeer, "* 4 EXISTS\r\n")

			e.start(context.Background(), cbuf, ubuf, time.Minute)
			wantUp := "b SELECT INBOX\r\nc NOOP\r\n"
			wantDown := "* 3 EXISTS\r\n* 4 EXISTS\r\n"
			if got := readN(t, e.upstreamPeer, len(wantUp)); got != wantUp {
				t.Errorf("upstream got %q, want %q", got, wantUp)
			}
			if got := readN(t, e.clientPeer, len(wantDown)); got != wantDown {
				t.Errorf("client got %q, want %q", got, wantDown)
			}
			e.clientPeer.Close()
			e.upstreamPeer.Close()
			st := e.wait(t)
			if st.ClientToUpstream != int64(len(wantUp)) || st.UpstreamToClient != int64(len(wantDown)) {
				t.Errorf("stats = %+v, want %d and %d bytes", st, len(wantUp), len(wantDown))
			}
		})
	}
}

func TestRelayHalfClose(t *testing.T) {
	for _, mode := range relayModes {
		t.Run(mode, func(t *testing.T) {
			e := newRelayEnv(t, mode)
			e.start(context.Background(), nil, nil, time.Minute)
			io.WriteString(e.clientPeer, "a LOGOUT\r\n")
			halfClose(t, e.clientPeer)
			if got := readN(t, e.upstreamPeer, 10); got != "a LOGOUT\r\n" {
				t.Fatalf("upstream got %q", got)
			}
			expectEOF(t, e.upstreamPeer)
			// The other direction still works after the half-close.
			const bye = "* BYE logging out\r\na OK done\r\n"
			io.WriteString(e.upstreamPeer, bye)
			if got := readN(t, e.clientPeer, len(bye)); got != bye {
				t.Fatalf("client got %q", got)
			}
			halfClose(t, e.upstreamPeer)
			expectEOF(t, e.clientPeer)
			st := e.wait(t)
			if st.EndedBy != EndedByClient || st.ClientToUpstream != 10 || st.UpstreamToClient != int64(len(bye)) {
				t.Errorf("stats = %+v", st)
			}
			line := e.closedLine(t)
			if line["ended_by"] != EndedByClient || line["client_to_upstream"] != float64(10) || line["upstream_to_client"] != float64(len(bye)) || line["duration"] == nil {
				t.Errorf("closed line = %v", line)
			}
			if _, ok := line["err"]; ok {
				t.Errorf("clean close logged an error: %v", line)
			}
		})
	}
}

func TestRelayEnds(t *testing.T) {
	tests := []struct {
		name    string
		act     func(e *relayEnv, cancel context.CancelFunc)
		idle    time.Duration
		endedBy string
	}{
		{"idle timeout", func(*relayEnv, context.CancelFunc) {}, 50 * time.Millisecond, EndedByIdle},
		{"context cancelled", func(_ *relayEnv, cancel context.CancelFunc) { cancel() }, time.Minute, EndedByCancel},
		{"upstream hangs up", func(e *relayEnv, _ context.CancelFunc) {
			io.WriteString(e.upstreamPeer, "* BYE\r\n")
			e.upstreamPeer.Close()
			// The client reads the BYE and the end, and hangs up too.
			e.clientPeer.SetReadDeadline(time.Now().Add(10 * time.Second))
			io.Copy(io.Discard, e.clientPeer)
			e.clientPeer.Close()
		}, time.Minute, EndedByUpstream},
		{"client resets", func(e *relayEnv, _ context.CancelFunc) {
			c := e.clientPeer
			if tc, ok := c.(*tls.Conn); ok {
				c = tc.NetConn() // no close_notify: the TCP connection just dies
			}
			c.(*net.TCPConn).SetLinger(0) // close sends RST
			c.Close()
		}, time.Minute, EndedByClient},
	}
	for _, mode := range relayModes {
		for _, tt := range tests {
			t.Run(mode+"/"+tt.name, func(t *testing.T) {
				e := newRelayEnv(t, mode)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				e.start(ctx, nil, nil, tt.idle)
				tt.act(e, cancel)
				st := e.wait(t)
				if st.EndedBy != tt.endedBy {
					t.Errorf("ended by %q, want %q", st.EndedBy, tt.endedBy)
				}
				e.closedLine(t)
				// Both connections are closed: the peers read the end.
				for _, peer := range []net.Conn{e.clientPeer, e.upstreamPeer} {
					peer.SetReadDeadline(time.Now().Add(10 * time.Second))
					if _, err := io.Copy(io.Discard, peer); err != nil && !isConnEnd(err) {
						t.Errorf("peer read: %v", err)
					}
				}
				if tt.endedBy == EndedByClient {
					if line := e.closedLine(t); line["err"] == nil {
						t.Errorf("reset not noted in the closed line: %v", line)
					}
				}
			})
		}
	}
}

// isConnEnd reports whether err is how a closed or reset connection reads.
func isConnEnd(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.EPIPE)
}

// TestRelayOneWayTrafficKeepsBothAlive sends data one way only, in pieces
// spread over more than the idle time: the relay must not end as idle,
// because the other direction's silence is not inactivity.
func TestRelayOneWayTrafficKeepsBothAlive(t *testing.T) {
	const (
		idle   = time.Second
		pieces = 6
		gap    = idle / 5
		piece  = "* 1 FETCH (FLAGS (\\Seen))\r\n"
	)
	for _, mode := range relayModes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			e := newRelayEnv(t, mode)
			e.start(context.Background(), nil, nil, idle)
			last := time.Now()
			for i := range pieces {
				io.WriteString(e.upstreamPeer, piece)
				readN(t, e.clientPeer, len(piece))
				if d := time.Since(last); d > idle*3/4 {
					// The machine stalled this test for most of the idle
					// time: an idle end would be right, so no verdict.
					t.Skipf("piece %d took %s, too close to the idle time", i, d)
				}
				last = time.Now()
				if i < pieces-1 {
					time.Sleep(gap)
				}
			}
			select {
			case st := <-e.result:
				t.Fatalf("relay ended during one-way traffic: %+v", st)
			default:
			}
			// The client direction still works after more than idle.
			io.WriteString(e.clientPeer, "a NOOP\r\n")
			readN(t, e.upstreamPeer, len("a NOOP\r\n"))
			e.clientPeer.Close()
			e.upstreamPeer.Close()
			e.wait(t)
		})
	}
}

func TestRelayLargeTransfer(t *testing.T) {
	const down, up = 8 << 20, 1 << 20
	for _, mode := range relayModes {
		t.Run(mode, func(t *testing.T) {
			e := newRelayEnv(t, mode)
			e.start(context.Background(), nil, nil, time.Minute)
			downData := randomBytes(t, down)
			upData := randomBytes(t, up)
			var wg sync.WaitGroup
			send := func(c net.Conn, b []byte) {
				defer wg.Done()
				c.Write(b)
				c.(interface{ CloseWrite() error }).CloseWrite()
			}
			wg.Add(2)
			go send(e.upstreamPeer, downData)
			go send(e.clientPeer, upData)
			gotDown := make(chan [32]byte, 1)
			go func() { gotDown <- hashAll(e.clientPeer) }()
			if got := hashAll(e.upstreamPeer); got != sha256.Sum256(upData) {
				t.Error("client-to-upstream bytes differ")
			}
			if got := <-gotDown; got != sha256.Sum256(downData) {
				t.Error("upstream-to-client bytes differ")
			}
			wg.Wait()
			st := e.wait(t)
			if st.ClientToUpstream != up || st.UpstreamToClient != down {
				t.Errorf("stats = %+v, want %d and %d", st, up, down)
			}
		})
	}
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func hashAll(c net.Conn) [32]byte {
	h := sha256.New()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	io.Copy(h, c)
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

func TestRelayUsesSpliceOnlyForPlainTCP(t *testing.T) {
	b, a := testkit.TCPPair(t)
	d, c := testkit.TCPPair(t)
	wrapped := &Conn{Conn: a}
	if r := newRelay(wrapped, c, RelayOptions{}, true); !r.splice || r.idle != DefaultIdleTimeout {
		t.Errorf("plain TCP (one wrapped in *Conn): splice=%v idle=%v", r.splice, r.idle)
	}
	if r := newRelay(tls.Client(b, &tls.Config{}), d, RelayOptions{}, true); r.splice {
		t.Error("TLS client side: splice chosen")
	}
}

// BenchmarkRelay measures relay throughput upstream to client over loopback.
func BenchmarkRelay(b *testing.B) {
	const chunk = 1 << 20
	for _, mode := range relayModes {
		b.Run(mode, func(b *testing.B) {
			e := newRelayEnv(b, mode)
			e.start(context.Background(), nil, nil, time.Minute)
			data := make([]byte, chunk)
			done := make(chan error, 1)
			go func() {
				_, err := io.CopyN(io.Discard, e.clientPeer, int64(b.N)*chunk)
				done <- err
			}()
			b.SetBytes(chunk)
			b.ResetTimer()
			for range b.N {
				if _, err := e.upstreamPeer.Write(data); err != nil {
					b.Fatal(err)
				}
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			e.clientPeer.Close()
			e.upstreamPeer.Close()
			e.wait(b)
		})
	}
}
