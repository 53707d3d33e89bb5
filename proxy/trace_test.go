package proxy

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
)

// tagRedactor marks which method saw each line.
type tagRedactor struct{}

func (tagRedactor) Command(line string) string { return "C:" + line }
func (tagRedactor) Reply(line string) string   { return "R:" + line }

// traceRecord is one decoded trace log line.
type traceRecord struct{ peer, dir, line string }

func traceRecords(t *testing.T, logs *logBuffer) []traceRecord {
	t.Helper()
	var out []traceRecord
	for _, r := range logs.records(t) {
		if r["msg"] != "trace" {
			continue
		}
		if r["level"] != "DEBUG" {
			t.Errorf("trace record at %v, want DEBUG", r["level"])
		}
		line, _ := r["line"].(string)
		if r["truncated"] == true {
			line += "[truncated]"
		}
		out = append(out, traceRecord{peer: r["peer"].(string), dir: r["dir"].(string), line: line})
	}
	return out
}

// tracedPipe returns a traced end of a pipe (as seen from xoauthd) and the
// other end.
func tracedPipe(t *testing.T, peer string, logs *logBuffer) (traced, other net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	c := &Conn{Log: newJSONLogger(logs), trace: true}
	traced = c.Traced(a, peer, tagRedactor{})
	if traced == a {
		t.Fatal("Traced did not wrap the connection")
	}
	return traced, b
}

func TestTraceLinesAndRoles(t *testing.T) {
	tests := []struct {
		peer string
		want []traceRecord
	}{
		{TracePeerClient, []traceRecord{
			{"client", "in", "C:a LOGIN x y"},
			{"client", "in", "C:b NOOP"},
			{"client", "out", "R:a OK done"},
		}},
		{TracePeerUpstream, []traceRecord{
			{"upstream", "in", "R:a LOGIN x y"},
			{"upstream", "in", "R:b NOOP"},
			{"upstream", "out", "C:a OK done"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.peer, func(t *testing.T) {
			logs := new(logBuffer)
			traced, other := tracedPipe(t, tt.peer, logs)
			go func() {
				// One line split over two writes, then two lines in one,
				// then a partial line that never ends.
				io.WriteString(other, "a LOGIN ")
				io.WriteString(other, "x y\r\nb NOOP\r\nc PART")
			}()
			buf := make([]byte, 64)
			got := 0
			for got < len("a LOGIN x y\r\nb NOOP\r\nc PART") {
				n, err := traced.Read(buf)
				if err != nil {
					t.Fatal(err)
				}
				got += n
			}
			go io.Copy(io.Discard, other)
			if _, err := io.WriteString(traced, "a OK done\r\n"); err != nil {
				t.Fatal(err)
			}
			recs := traceRecords(t, logs)
			if len(recs) != len(tt.want) {
				t.Fatalf("trace = %+v, want %+v", recs, tt.want)
			}
			for i := range recs {
				if recs[i] != tt.want[i] {
					t.Errorf("trace[%d] = %+v, want %+v", i, recs[i], tt.want[i])
				}
			}
		})
	}
}

func TestTraceBoundsLongLines(t *testing.T) {
	logs := new(logBuffer)
	traced, other := tracedPipe(t, TracePeerClient, logs)
	long := strings.Repeat("x", 10*maxTraceLine)
	go io.WriteString(other, long+"\r\nnext\r\n")
	readN(t, traced, len(long)+len("\r\nnext\r\n"))
	recs := traceRecords(t, logs)
	if len(recs) != 2 {
		t.Fatalf("trace = %+v, want two records", recs)
	}
	if wantLine := "C:" + long[:maxTraceLine] + "[truncated]"; recs[0].line != wantLine {
		t.Errorf("long line logged as %d bytes, want the first %d and a truncated mark", len(recs[0].line), maxTraceLine)
	}
	if recs[1].line != "C:next" {
		t.Errorf("line after the long one = %q, want C:next", recs[1].line)
	}
}

func TestTracedOnlyWhenOn(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	debug := newJSONLogger(io.Discard)
	info := slog.New(slog.NewJSONHandler(io.Discard, nil))
	tests := []struct {
		name string
		c    *Conn
		r    Redactor
		want bool
	}{
		{"on", &Conn{Log: debug, trace: true}, tagRedactor{}, true},
		{"off", &Conn{Log: debug}, tagRedactor{}, false},
		{"no logger", &Conn{trace: true}, tagRedactor{}, false},
		{"no redactor", &Conn{Log: debug, trace: true}, nil, false},
	}
	for _, tt := range tests {
		if got := tt.c.Traced(a, TracePeerClient, tt.r) != a; got != tt.want {
			t.Errorf("%s: wrapped = %v, want %v", tt.name, got, tt.want)
		}
	}
	// A Server decides at accept: Trace and a logger at DEBUG.
	for _, tt := range []struct {
		trace bool
		log   *slog.Logger
		want  bool
	}{{true, debug, true}, {true, info, false}, {false, debug, false}} {
		s := &Server{Protocol: "imap", Trace: tt.trace, Log: tt.log}
		s.init()
		_, cancel := context.WithCancel(context.Background())
		c := s.newConn(a, cancel)
		cancel()
		if c.trace != tt.want {
			t.Errorf("Server{Trace: %v} with level %v: conn traced = %v, want %v", tt.trace, tt.log.Enabled(context.Background(), slog.LevelDebug), c.trace, tt.want)
		}
	}
}

func TestStopTrace(t *testing.T) {
	logs := new(logBuffer)
	traced, other := tracedPipe(t, TracePeerClient, logs)
	go io.Copy(io.Discard, other)
	io.WriteString(traced, "250 before\r\n")
	StopTrace(traced)
	io.WriteString(traced, "250 after\r\n")
	StopTrace(other) // not traced: nothing happens
	recs := traceRecords(t, logs)
	if len(recs) != 1 || recs[0].line != "R:250 before" {
		t.Errorf("trace = %+v, want only the line before StopTrace", recs)
	}
}

func BenchmarkTraceConn(b *testing.B) {
	c := &Conn{Log: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug})), trace: true}
	tc := c.Traced(nopConn{}, TracePeerClient, tagRedactor{}).(*traceConn)
	chunk := bytes.Repeat([]byte("a NOOP\r\n"), 64)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		tc.feed(&tc.in, "in", chunk)
	}
}

// nopConn is a net.Conn that does nothing.
type nopConn struct{ net.Conn }
