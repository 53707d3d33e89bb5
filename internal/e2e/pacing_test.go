package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// TestSMTPPacingToDovecot: with send_rate on the SMTP server, a burst of
// 12 messages over 3 connections as one identity all reach Dovecot and none
// is refused; after a reload to 1/hour, the second message of the hour is
// refused at once with 451 4.7.0 naming the limit, and is not sent.
func TestSMTPPacingToDovecot(t *testing.T) {
	r := newRigWith(t, rigOptions{smtpYAML: "send_rate: 10/s"})
	clients := make([]*smtp.Client, 3)
	for i := range clients {
		clients[i] = dialSMTPFrom(t, r.smtp, "127.0.0.1")
		if err := clients[i].Auth(sasl.NewPlainClient("", aliceLogin, alicePass)); err != nil {
			t.Fatal(err)
		}
	}
	before := len(r.dc.Sink.Messages())
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	start := make(chan struct{})
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for j := range 4 {
				if err := c.SendMail(alice, []string{bob}, bytes.NewReader(message(fmt.Sprintf("burst-%d-%d", i, j), 500))); err != nil {
					errs <- fmt.Errorf("connection %d, message %d: %w", i, j, err)
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if _, err := r.dc.Sink.WaitFor(before+12, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if v := metricValue(t, r, "xoauthd_smtp_messages_refused_total"); v != 0 {
		t.Errorf("%v messages refused by the limit, want none", v)
	}
	for _, c := range clients {
		if err := c.Quit(); err != nil {
			t.Fatal(err)
		}
	}

	r.reconfigure(rigOptions{smtpYAML: "send_rate: 1/hour"})
	c := dialSMTPFrom(t, r.smtp, "127.0.0.1")
	if err := c.Auth(sasl.NewPlainClient("", aliceLogin, alicePass)); err != nil {
		t.Fatal(err)
	}
	before = len(r.dc.Sink.Messages())
	if err := c.SendMail(alice, []string{bob}, bytes.NewReader(message("hourly-1", 100))); err != nil {
		t.Fatalf("first message of the hour: %v", err)
	}
	err := c.SendMail(alice, []string{bob}, bytes.NewReader(message("hourly-2", 100)))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 7, 0}) ||
		!strings.Contains(se.Message, "Sending limit of 1 message per hour") || !strings.Contains(se.Message, "try again in 3600 seconds") {
		t.Fatalf("second message of the hour: %v, want 451 4.7.0 naming the limit and the wait", err)
	}
	got, err := r.dc.Sink.WaitFor(before+1, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(r.dc.Sink.Messages()); n != before+1 || !bytes.Contains(got[before].Data, []byte("hourly-1")) {
		t.Fatalf("Dovecot has %d new messages, want hourly-1 alone", n-before)
	}
	if v := metricValue(t, r, "xoauthd_smtp_messages_refused_total"); v != 1 {
		t.Errorf("%v messages refused by the limit, want 1", v)
	}
	r.expectLog(t, "message refused for now: sending limit reached", `limit="1 message per hour"`)
}

// metricValue sums the counter name over all its series in the daemon's
// registry.
func metricValue(t *testing.T, r *rig, name string) float64 {
	t.Helper()
	fams, err := r.d.Metrics().Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
