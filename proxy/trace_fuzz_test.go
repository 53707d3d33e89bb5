package proxy

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzTraceLines feeds arbitrary bytes, read in chunks of a fuzzed size,
// through a traced connection: the trace must log one record per line end,
// each through the redactor and cut at maxTraceLine, whatever the chunking.
func FuzzTraceLines(f *testing.F) {
	f.Add([]byte("a LOGIN alice secret\r\nb NOOP\r\n"), uint8(3))
	f.Add([]byte(strings.Repeat("x", 3*maxTraceLine)+"\r\nshort\n"), uint8(200))
	f.Add([]byte(strings.Repeat("y", maxTraceLine)+"\r\n"), uint8(1))
	f.Add([]byte("\n\n\r\n\r\r\n"), uint8(0))
	f.Add([]byte("no line end at all"), uint8(7))
	f.Add([]byte("\xff\xfe binary \x00\x01\n"), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		if len(data) > 1<<16 {
			return
		}
		var logs logBuffer
		a, b := net.Pipe()
		defer a.Close()
		c := &Conn{Log: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), trace: true}
		traced := c.Traced(a, TracePeerClient, tagRedactor{})
		go func() {
			b.Write(data)
			b.Close()
		}()
		buf := make([]byte, int(chunk)%64+1)
		for {
			if _, err := traced.Read(buf); err != nil {
				break
			}
		}
		recs := traceRecords(t, &logs)
		lines := bytes.Split(data, []byte("\n"))
		if len(recs) != len(lines)-1 {
			t.Fatalf("%d trace records for %d line ends", len(recs), len(lines)-1)
		}
		for i, r := range recs {
			kept := lines[i][:min(len(lines[i]), maxTraceLine)]
			want := "C:" + strings.TrimSuffix(string(kept), "\r")
			if len(lines[i]) > maxTraceLine {
				want += "[truncated]"
			}
			if len(r.line) > len("C:")+maxTraceLine+len("[truncated]")+3*maxTraceLine {
				t.Fatalf("record %d has %d bytes", i, len(r.line))
			}
			// JSON replaces invalid UTF-8: compare exactly only valid text.
			if utf8.ValidString(want) && r.line != want {
				t.Fatalf("record %d = %q, want %q", i, r.line, want)
			}
			if r.peer != TracePeerClient || r.dir != "in" {
				t.Fatalf("record %d: peer %q dir %q", i, r.peer, r.dir)
			}
		}
	})
}
