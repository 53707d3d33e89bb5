package testline

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// Timeout bounds each write, each wait for a line and the wait for the end.
const Timeout = 30 * time.Second

// Conn is a connection a test drives line by line.
type Conn struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

// Dial connects to addr; the connection is closed when the test ends.
func Dial(t testing.TB, addr string) *Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &Conn{t: t, c: c, br: bufio.NewReader(c)}
}

// Send writes line with CRLF.
func (c *Conn) Send(line string) {
	c.t.Helper()
	c.c.SetWriteDeadline(time.Now().Add(Timeout))
	if _, err := io.WriteString(c.c, line+"\r\n"); err != nil {
		c.t.Fatal(err)
	}
}

// Until reads lines until one starts with prefix, and returns it (with its
// line end).
func (c *Conn) Until(prefix string) string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(Timeout))
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading (want %q): %v (got %q)", prefix, err, line)
		}
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
}

// Rest reads to the end of the connection (a reset counts as the end) and
// returns what came; the test fails when the connection is still open
// after Timeout.
func (c *Conn) Rest() string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(Timeout))
	b, err := io.ReadAll(c.br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("still open; read %d bytes", len(b))
	}
	return string(b)
}
