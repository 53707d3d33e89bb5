package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// TestSMTPShutdownDuringDATA: a graceful shutdown (what SIGTERM triggers)
// while a 25 MiB message is streaming either lets the message finish with a
// 250 that the upstream really has, or ends it with a 4xx or a broken
// connection; never a 250 for a message the upstream does not have.
func TestSMTPShutdownDuringDATA(t *testing.T) {
	r := newRig(t)
	msg := message("shutdown", 25<<20)
	pr, pw := io.Pipe()
	started := make(chan struct{})
	go func() {
		_, _ = pw.Write(msg[:1<<20])
		close(started)
		_, err := pw.Write(msg[1<<20:])
		pw.CloseWithError(err)
	}()
	errc := make(chan error, 1)
	go func() {
		c, err := smtp.Dial(r.smtp)
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		if err := c.Auth(sasl.NewPlainClient("", aliceLogin, alicePass)); err != nil {
			errc <- err
			return
		}
		errc <- c.SendMail(alice, []string{bob}, pr)
	}()
	select {
	case <-started:
	case err := <-errc:
		t.Fatalf("the send ended before DATA was under way: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = r.d.Shutdown(ctx)
	err := <-errc
	pr.CloseWithError(errors.New("test over"))

	delivered := false
	for _, m := range r.dc.Sink.Messages() {
		if bytes.Equal(stripReceived(m.Data), msg) {
			delivered = true
		}
	}
	var se *smtp.SMTPError
	switch {
	case err == nil:
		if !delivered {
			t.Fatal("the client got 250 but the upstream does not have the message")
		}
		t.Log("the message finished during the drain and was delivered")
	case errors.As(err, &se):
		if se.Code/100 != 4 {
			t.Fatalf("shutdown during DATA answered %d %v, want a 4xx", se.Code, se.EnhancedCode)
		}
		t.Logf("shutdown during DATA answered %d (delivered: %v)", se.Code, delivered)
	default:
		t.Logf("the connection broke off during shutdown: %v (delivered: %v)", err, delivered)
	}
}

// TestShutdownMidResponse: a graceful shutdown that finds an IMAP FETCH
// literal and a POP3 RETR half sent to clients that have stopped reading
// ends both sessions within the drain time, without a goodbye inside the
// response: each client has a clean prefix of the message and then the end.
func TestShutdownMidResponse(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	msg := message("mid-response", 32<<20)
	if err := r.dc.Deliver(alice, msg); err != nil {
		t.Fatal(err)
	}
	imap := dialRaw(t, r.imap)
	imap.until("* OK")
	imap.send(`a LOGIN ` + aliceLogin + ` "` + alicePass + `"`)
	imap.until("a OK")
	imap.send("b SELECT INBOX")
	imap.until("b OK")
	imap.send("c FETCH 1 BODY.PEEK[]")
	if head := imap.until("* 1 FETCH"); !strings.HasSuffix(head, fmt.Sprintf("{%d}\r\n", len(msg))) {
		t.Fatalf("FETCH began with %q", head)
	}
	pop := dialRaw(t, r.pop3)
	pop.until("+OK")
	pop.send("USER " + aliceLogin)
	pop.until("+OK")
	pop.send("PASS " + alicePass)
	pop.until("+OK")
	pop.send("RETR 1")
	pop.until("+OK")
	// Neither client reads on.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.d.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown = %v, want every session ended within the drain time", err)
	}
	literal := imap.rest()
	if len(literal) >= len(msg) || !bytes.Equal([]byte(literal), msg[:len(literal)]) {
		t.Errorf("IMAP got %d bytes after the FETCH line, want a clean prefix of the %d-byte literal", len(literal), len(msg))
	}
	body := pop.rest()
	if len(body) >= len(msg) || !bytes.Equal([]byte(body), msg[:len(body)]) {
		t.Errorf("POP3 got %d bytes after +OK, want a clean prefix of the %d-byte message", len(body), len(msg))
	}
	t.Logf("cut after %d of %d bytes (IMAP) and %d (POP3)", len(literal), len(msg), len(body))
}

// rawConn is a raw client of a line protocol.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

// send writes line with CRLF.
func (c *rawConn) send(line string) {
	c.t.Helper()
	c.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.c, line+"\r\n"); err != nil {
		c.t.Fatal(err)
	}
}

// until reads lines until one starts with prefix and returns it.
func (c *rawConn) until(prefix string) string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(30 * time.Second))
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

// rest reads to the end of the connection (a reset counts as the end),
// bounded.
func (c *rawConn) rest() string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	b, err := io.ReadAll(c.br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("still open after the shutdown; read %d bytes", len(b))
	}
	return string(b)
}
