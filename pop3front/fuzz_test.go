package pop3front

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// maxFuzzOutput bounds what one fuzz input may make the server send.
const maxFuzzOutput = 1 << 20

// FuzzPOP3PreAuth feeds arbitrary client input to a whole session (over
// loopback, with the harness's accounts and fake upstream) and checks that
// the server neither panics nor hangs, and that before login it only sends
// well-formed replies, stops after QUIT and after too many errors.
func FuzzPOP3PreAuth(f *testing.F) {
	for _, steps := range loadTranscripts(f) {
		f.Add(clientBytes(steps))
	}
	h := newHarness(f)
	h.logsMayHoldSecrets = true
	f.Fuzz(func(t *testing.T, input []byte) {
		c := h.dial(t)
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			c.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
			if _, err := c.conn.Write(input); err == nil {
				c.conn.(*net.TCPConn).CloseWrite()
			}
		}()
		c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
		out, err := io.ReadAll(io.LimitReader(c.conn, maxFuzzOutput))
		<-wrote
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("session still open after %v", ioTimeout)
		}
		if h.panics.Load() > 0 {
			t.Fatal("the server panicked")
		}
		checkPreAuthOutput(t, out)
	})
}

// checkPreAuthOutput checks the server's output up to a successful login.
func checkPreAuthOutput(t *testing.T, out []byte) {
	pre, _, loggedIn := bytes.Cut(out, []byte(strings.TrimSuffix(replyLoggedIn, "\r\n")))
	if !loggedIn && len(out) > 0 && !bytes.HasSuffix(out, []byte("\r\n")) {
		t.Fatalf("output ends in a partial line: %q", out)
	}
	lines := strings.Split(string(pre), "\r\n")
	lines = lines[:len(lines)-1]
	if len(lines) == 0 || lines[0] != strings.TrimSuffix(greeting, "\r\n") {
		t.Fatalf("no greeting: %q", out)
	}
	listing := map[string]bool{".": true, "PLAIN": true, "LOGIN": true}
	for _, c := range New(Options{}).capabilities() {
		listing[c] = true
	}
	errs := 0
	for i, line := range lines {
		switch {
		case line == "+OK Bye" && i != len(lines)-1:
			t.Fatalf("output after QUIT: %q", lines[i+1:])
		case strings.HasPrefix(line, "-ERR "):
			errs++
		case strings.HasPrefix(line, "+OK"), strings.HasPrefix(line, "+ "), listing[line]:
		default:
			t.Fatalf("malformed reply line %q", line)
		}
	}
	if errs > maxErrors+1 {
		t.Fatalf("%d -ERR replies before the connection was closed, want at most %d", errs, maxErrors+1)
	}
}
