package proxy

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"
)

// lineFarewell is a Farewell for a protocol of CRLF-terminated responses:
// a goodbye is safe when everything the client was sent ends with a CRLF.
// It records what it saw, to check that the relay shows it every byte.
type lineFarewell struct {
	mu       sync.Mutex
	client   bytes.Buffer
	upstream bytes.Buffer
}

func (f *lineFarewell) ClientBytes(p []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.client.Write(p)
}

func (f *lineFarewell) UpstreamBytes(p []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.upstream.Write(p)
}

func (f *lineFarewell) Goodbye() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.upstream.Len() > 0 && !bytes.HasSuffix(f.upstream.Bytes(), []byte("\r\n")) {
		return nil
	}
	return []byte("* BYE shutting down\r\n")
}

// startWith runs the relay with opts in the background (splice only in
// splice mode and without a Farewell, as Relay decides).
func (e *relayEnv) startWith(ctx context.Context, opts RelayOptions) {
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := newRelay(e.client, e.upstream, opts, e.splice && opts.Farewell == nil)
	go func() { e.result <- r.run(ctx, log, nil, nil) }()
}

// readToEnd reads c until end of stream or a reset, within a bound.
func readToEnd(t testing.TB, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil && !isConnEnd(err) {
		t.Fatalf("reading to the end: %v (got %q)", err, b)
	}
	return string(b)
}

// TestRelayDrain: closing Drain ends the relay at once, with the goodbye
// when the client is at the end of a response and without it in the
// middle of one; both connections are closed.
func TestRelayDrain(t *testing.T) {
	tests := []struct {
		name     string
		sent     string // upstream → client before the drain
		farewell bool
		goodbye  bool
	}{
		{"at the end of a response", "* OK still here\r\n+ idling\r\n", true, true},
		{"nothing sent yet", "", true, true},
		{"in the middle of a response", "* 1 FETCH (BODY[] {20}\r\nhalf a lit", true, false},
		{"without a farewell", "+ idling\r\n", false, false},
	}
	for _, mode := range relayModes {
		for _, tt := range tests {
			t.Run(mode+"/"+tt.name, func(t *testing.T) {
				e := newRelayEnv(t, mode)
				drain := make(chan struct{})
				fw := &lineFarewell{}
				opts := RelayOptions{Idle: time.Minute, Drain: drain}
				if tt.farewell {
					opts.Farewell = fw
				}
				e.startWith(context.Background(), opts)
				// A command goes up, the response so far comes down.
				io.WriteString(e.clientPeer, "a IDLE\r\n")
				if got := readN(t, e.upstreamPeer, 8); got != "a IDLE\r\n" {
					t.Fatalf("upstream got %q", got)
				}
				if tt.sent != "" {
					io.WriteString(e.upstreamPeer, tt.sent)
					if got := readN(t, e.clientPeer, len(tt.sent)); got != tt.sent {
						t.Fatalf("client got %q", got)
					}
				}
				close(drain)
				rest := readToEnd(t, e.clientPeer)
				st := e.wait(t)
				want := ""
				if tt.goodbye {
					want = "* BYE shutting down\r\n"
				}
				if rest != want {
					t.Errorf("after the drain the client read %q, want %q", rest, want)
				}
				if st.EndedBy != EndedByShutdown || st.Goodbye != tt.goodbye {
					t.Errorf("stats %+v, want ended by %s with goodbye %v", st, EndedByShutdown, tt.goodbye)
				}
				if line := e.closedLine(t); line["ended_by"] != EndedByShutdown || line["goodbye"] != tt.goodbye || line["err"] != nil {
					t.Errorf("closed line %v", line)
				}
				// The upstream connection is closed too.
				readToEnd(t, e.upstreamPeer)
				if tt.farewell {
					fw.mu.Lock()
					c, u := fw.client.String(), fw.upstream.String()
					fw.mu.Unlock()
					if c != "a IDLE\r\n" || u != tt.sent {
						t.Errorf("the farewell saw client %q and upstream %q", c, u)
					}
				}
			})
		}
	}
}

// TestRelayDrainClientNotReading: a client that does not read cannot hold
// a drained relay: the write towards it is cut after farewellWait.
func TestRelayDrainClientNotReading(t *testing.T) {
	for _, mode := range []string{modeBuffered, modeTLS} {
		t.Run(mode, func(t *testing.T) {
			e := newRelayEnv(t, mode)
			drain := make(chan struct{})
			e.startWith(context.Background(), RelayOptions{Idle: time.Minute, Drain: drain, Farewell: &lineFarewell{}})
			// The upstream sends until the client's buffers are full.
			filled := make(chan struct{})
			go func() {
				defer close(filled)
				chunk := bytes.Repeat([]byte("x"), 64<<10)
				e.upstreamPeer.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
				for {
					if _, err := e.upstreamPeer.Write(chunk); err != nil {
						return
					}
				}
			}()
			<-filled
			close(drain)
			st := e.wait(t)
			if st.EndedBy != EndedByShutdown || st.Goodbye {
				t.Errorf("stats %+v, want ended by shutdown without a goodbye", st)
			}
		})
	}
}

// TestConnOnDrain: f runs once Drain closes, or never after stop.
func TestConnOnDrain(t *testing.T) {
	drain := make(chan struct{})
	c := &Conn{Drain: drain}
	ran := make(chan struct{})
	c.OnDrain(func() { close(ran) })
	stopped := make(chan struct{}, 1)
	stop := c.OnDrain(func() { stopped <- struct{}{} })
	if !stop() {
		t.Error("stop before the drain did not report that it prevented f")
	}
	close(drain)
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("f did not run after the drain")
	}
	lateRan := make(chan struct{})
	c.OnDrain(func() { close(lateRan) })
	select {
	case <-lateRan:
	case <-time.After(10 * time.Second):
		t.Fatal("OnDrain after the drain did not run f")
	}
	select {
	case <-stopped:
		t.Error("a stopped OnDrain ran f")
	default:
	}
	if stop := (&Conn{}).OnDrain(func() { t.Error("ran without a drain channel") }); !stop() {
		t.Error("stop without a drain channel")
	}
}

// TestRelayDrainStopsReadsOnce: a drained relay whose reads were stopped
// does not count the deadline as a failure of either side.
func TestRelayDrainStopsReadsOnce(t *testing.T) {
	e := newRelayEnv(t, modeTLS)
	drain := make(chan struct{})
	close(drain)
	e.startWith(context.Background(), RelayOptions{Drain: drain, Farewell: &lineFarewell{}})
	if got := readToEnd(t, e.clientPeer); got != "* BYE shutting down\r\n" {
		t.Errorf("a relay drained from the start sent %q", got)
	}
	st := e.wait(t)
	if st.EndedBy != EndedByShutdown {
		t.Errorf("ended by %q", st.EndedBy)
	}
	if line := e.closedLine(t); line["err"] != nil {
		t.Errorf("closed line has an error: %v", line)
	}
}
