package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/internal/testline"
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
	imap := testline.Dial(t, r.imap)
	imap.Until("* OK")
	imap.Send(`a LOGIN ` + aliceLogin + ` "` + alicePass + `"`)
	imap.Until("a OK")
	imap.Send("b SELECT INBOX")
	imap.Until("b OK")
	imap.Send("c FETCH 1 BODY.PEEK[]")
	if head := imap.Until("* 1 FETCH"); !strings.HasSuffix(head, fmt.Sprintf("{%d}\r\n", len(msg))) {
		t.Fatalf("FETCH began with %q", head)
	}
	pop := testline.Dial(t, r.pop3)
	pop.Until("+OK")
	pop.Send("USER " + aliceLogin)
	pop.Until("+OK")
	pop.Send("PASS " + alicePass)
	pop.Until("+OK")
	pop.Send("RETR 1")
	pop.Until("+OK")
	// Neither client reads on.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.d.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown = %v, want every session ended within the drain time", err)
	}
	literal := imap.Rest()
	if len(literal) >= len(msg) || !bytes.Equal([]byte(literal), msg[:len(literal)]) {
		t.Errorf("IMAP got %d bytes after the FETCH line, want a clean prefix of the %d-byte literal", len(literal), len(msg))
	}
	body := pop.Rest()
	if len(body) >= len(msg) || !bytes.Equal([]byte(body), msg[:len(body)]) {
		t.Errorf("POP3 got %d bytes after +OK, want a clean prefix of the %d-byte message", len(body), len(msg))
	}
	t.Logf("cut after %d of %d bytes (IMAP) and %d (POP3)", len(literal), len(msg), len(body))
}
