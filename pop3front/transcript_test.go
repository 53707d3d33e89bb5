package pop3front

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// A transcript (testdata/transcripts/*.txt) is one client session, line by
// line:
//
//	# comment
//	S: text   the server sends this line (text may be a Go-quoted string)
//	C: text   the client sends this line and CRLF (text may be Go-quoted)
//	W: "..."  the client writes these raw bytes (Go-quoted) in one write
//	EOF       the server closes the connection
//
// The accounts and upstream are the harness's (see newHarness).

// step is one line of a transcript.
type step struct {
	kind string // "S", "C", "W" or "EOF"
	text string
	line int
}

func parseTranscript(data []byte) ([]step, error) {
	var steps []step
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if line == "EOF" {
			steps = append(steps, step{kind: "EOF", line: n})
			continue
		}
		kind, text, ok := strings.Cut(line, ": ")
		if !ok || (kind != "S" && kind != "C" && kind != "W") {
			return nil, fmt.Errorf("line %d: want S:, C:, W: or EOF, got %q", n, line)
		}
		if strings.HasPrefix(text, `"`) || kind == "W" {
			u, err := strconv.Unquote(text)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			text = u
		}
		steps = append(steps, step{kind: kind, text: text, line: n})
	}
	return steps, sc.Err()
}

// clientBytes is everything the client side of a transcript writes.
func clientBytes(steps []step) []byte {
	var b []byte
	for _, s := range steps {
		switch s.kind {
		case "C":
			b = append(append(b, s.text...), "\r\n"...)
		case "W":
			b = append(b, s.text...)
		}
	}
	return b
}

func loadTranscripts(tb testing.TB) map[string][]step {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "transcripts", "*.txt"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no transcripts: %v", err)
	}
	out := map[string][]step{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		steps, err := parseTranscript(data)
		if err != nil {
			tb.Fatalf("%s: %v", f, err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".txt")] = steps
	}
	return out
}

func TestTranscripts(t *testing.T) {
	for name, steps := range loadTranscripts(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// A harness each: the upstream locks a maildrop for one
			// session at a time (RFC 1939 section 8).
			h := newHarness(t)
			c := h.dial(t)
			for _, s := range steps {
				switch s.kind {
				case "S":
					got, err := c.readLine()
					if err != nil || got != s.text {
						t.Fatalf("line %d: got %q (%v), want %q", s.line, got, err, s.text)
					}
				case "C":
					c.send(s.text)
				case "W":
					c.write(s.text)
				case "EOF":
					c.expectClosed()
				}
			}
		})
	}
}
