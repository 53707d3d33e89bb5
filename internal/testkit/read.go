package testkit

import (
	"bufio"
	"io"
	"strings"
	"testing"
	"time"
)

// ReadUntil reads r line by line until the text read contains marker and
// returns that text; it fails t when r ends first or timeout passes.
// After a timeout the reading goroutine ends with r (close it).
func ReadUntil(t testing.TB, r io.Reader, marker string, timeout time.Duration) string {
	t.Helper()
	type result struct {
		s   string
		err error
	}
	ch := make(chan result, 1)
	go func() {
		var b strings.Builder
		br := bufio.NewReader(r)
		for {
			line, err := br.ReadString('\n')
			b.WriteString(line)
			if strings.Contains(b.String(), marker) || err != nil {
				ch <- result{b.String(), err}
				return
			}
		}
	}()
	select {
	case res := <-ch:
		if !strings.Contains(res.s, marker) {
			t.Fatalf("output ended (%v) without %q:\n%s", res.err, marker, res.s)
		}
		return res.s
	case <-time.After(timeout):
		t.Fatalf("no %q in the output within %v", marker, timeout)
		return ""
	}
}
