package e2e

import (
	"bytes"
	"context"
	"errors"
	"io"
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
