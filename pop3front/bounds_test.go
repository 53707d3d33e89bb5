package pop3front

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// endlessReader yields one byte forever and counts how many were read.
type endlessReader struct {
	b byte
	n int
}

func (r *endlessReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r.b
	}
	r.n += len(p)
	return len(p), nil
}

// TestReadLineBounded shows that a line without an end costs at most the
// reader's fixed buffer.
func TestReadLineBounded(t *testing.T) {
	src := &endlessReader{b: 'a'}
	r := bufio.NewReaderSize(src, maxLine)
	if _, err := readLine(r); !errors.Is(err, errLineTooLong) {
		t.Fatalf("readLine of an endless line: %v, want errLineTooLong", err)
	}
	if src.n > maxLine {
		t.Fatalf("read %d bytes of an endless line, want at most %d", src.n, maxLine)
	}
	if r.Size() != maxLine {
		t.Fatalf("reader grew to %d", r.Size())
	}
}

func TestReadLine(t *testing.T) {
	tests := []struct {
		in    string
		lines []string
		err   error
	}{
		{in: "CAPA\r\n", lines: []string{"CAPA"}, err: io.EOF},
		{in: "CAPA\nQUIT\r\n", lines: []string{"CAPA", "QUIT"}, err: io.EOF},
		{in: "\r\n\n", lines: []string{"", ""}, err: io.EOF},
		{in: "PASS a\rb\r\n", lines: []string{"PASS a\rb"}, err: io.EOF},
		{in: "CAPA", err: io.ErrUnexpectedEOF},
		{in: strings.Repeat("x", maxLine-2) + "\r\n", lines: []string{strings.Repeat("x", maxLine-2)}, err: io.EOF},
		{in: strings.Repeat("x", maxLine-1) + "\r\n", err: errLineTooLong},
	}
	for _, tt := range tests {
		r := bufio.NewReaderSize(strings.NewReader(tt.in), maxLine)
		var got []string
		var err error
		for {
			var line []byte
			if line, err = readLine(r); err != nil {
				break
			}
			got = append(got, string(line))
		}
		if strings.Join(got, "|") != strings.Join(tt.lines, "|") || !errors.Is(err, tt.err) {
			t.Errorf("readLine(%.20q): %q, %v; want %q, %v", tt.in, got, err, tt.lines, tt.err)
		}
	}
}

func TestLineTooLong(t *testing.T) {
	h := newHarness(t)
	for _, line := range []string{
		"USER " + strings.Repeat("a", maxLine),
		"AUTH PLAIN " + strings.Repeat("QUFB", maxLine/4),
	} {
		c := h.dialGreeted(t)
		c.send(line)
		c.expect(strings.TrimSuffix(replyTooLong, "\r\n"))
		c.expectClosed()
	}
	// A long continuation line is bounded the same way.
	c := h.dialGreeted(t)
	c.cmd("AUTH PLAIN", "+ ")
	c.send(strings.Repeat("QUFB", maxLine/4))
	c.expect(strings.TrimSuffix(replyTooLong, "\r\n"))
	c.expectClosed()
}

// TestEndlessInput feeds input without a line end until the server closes
// the connection; the server reads at most its fixed buffer plus what it
// discards while lingering.
func TestEndlessInput(t *testing.T) {
	h := newHarness(t)
	c := h.dialGreeted(t)
	writeErr := make(chan error, 1)
	go func() {
		chunk := []byte(strings.Repeat("x", 32<<10))
		c.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
		for {
			if _, err := c.conn.Write(chunk); err != nil {
				writeErr <- err
				return
			}
		}
	}()
	line, err := c.readLine()
	if err == nil && line != strings.TrimSuffix(replyTooLong, "\r\n") {
		t.Fatalf("got %q, want the line-too-long reply or a closed connection", line)
	}
	if err == nil {
		c.expectClosed()
	}
	var ne interface{ Timeout() bool }
	if err := <-writeErr; errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept reading endless input for %v", ioTimeout)
	}
}

// TestSilentClient: a client that says nothing is disconnected at the
// pre-auth deadline.
func TestSilentClient(t *testing.T) {
	h := newHarness(t, withPreAuthTimeout(200*time.Millisecond))
	c := h.dialGreeted(t)
	c.expect(strings.TrimSuffix(replyTimeout, "\r\n"))
	c.expectClosed()
	if !strings.Contains(h.logs.String(), "no login within the pre-auth timeout") {
		t.Error("no log line for the timeout")
	}
}

// TestSlowClients: the deadline covers the whole dialogue, so neither a
// client trickling one line byte by byte nor one sending valid commands
// forever stays connected.
func TestSlowClients(t *testing.T) {
	h := newHarness(t, withPreAuthTimeout(300*time.Millisecond))
	tests := map[string]string{
		"trickle": "USER " + strings.Repeat("a", 200),
		"chatty":  strings.Repeat("CAPA\r\n", 1000),
	}
	for name, input := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := h.dialGreeted(t)
			go func() {
				for i := range len(input) {
					if _, err := c.conn.Write([]byte{input[i]}); err != nil {
						return
					}
					time.Sleep(5 * time.Millisecond) // pacing only; nothing asserts on time
				}
			}()
			for {
				line, err := c.readLine()
				if err != nil {
					var ne interface{ Timeout() bool }
					if errors.As(err, &ne) && ne.Timeout() {
						t.Fatalf("connection still open after %v", ioTimeout)
					}
					return
				}
				if strings.HasPrefix(line, "-ERR") && line != strings.TrimSuffix(replyTimeout, "\r\n") {
					t.Fatalf("unexpected %q", line)
				}
			}
		})
	}
}
