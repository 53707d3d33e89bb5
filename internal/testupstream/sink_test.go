package testupstream

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// testSinkMaxBytes is the message size limit of test sinks (small, so the
// oversize test stays fast under -race).
const testSinkMaxBytes = 64 << 10

// newTestSink starts a sink delivering into a temporary directory owned by
// the current user (no root, no Dovecot needed).
func newTestSink(t *testing.T) (*Sink, *maildir) {
	t.Helper()
	md := &maildir{root: t.TempDir(), uid: os.Getuid(), gid: os.Getgid()}
	s, err := newSink(md, testSinkMaxBytes)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("closing sink: %v", err)
		}
	})
	return s, md
}

func sendToSink(t *testing.T, s *Sink, from string, to []string, msg []byte) error {
	t.Helper()
	c, err := smtp.Dial(s.Addr)
	if err != nil {
		t.Fatalf("dialing sink: %v", err)
	}
	defer c.Close()
	return c.SendMail(from, to, bytes.NewReader(msg))
}

func TestSinkDeliversToEveryRecipient(t *testing.T) {
	t.Parallel()
	s, md := newTestSink(t)
	msg := crlf("Subject: two", "", "line", ".dot", "")
	to := []string{"A@example.test", "b@example.test"}
	if err := sendToSink(t, s, "x@example.test", to, msg); err != nil {
		t.Fatal(err)
	}
	got, err := s.WaitFor(1, testSinkWait)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].From != "x@example.test" || strings.Join(got[0].To, ",") != strings.Join(to, ",") || !bytes.Equal(got[0].Data, msg) {
		t.Fatalf("messages = %+v", got)
	}
	for _, user := range []string{"a@example.test", "b@example.test"} {
		files, err := filepath.Glob(filepath.Join(md.root, user, "new", "*"))
		if err != nil || len(files) != 1 {
			t.Fatalf("%s new/ = %v (%v), want one file", user, files, err)
		}
		data, err := os.ReadFile(files[0])
		if err != nil || !bytes.Equal(data, msg) {
			t.Errorf("%s message = %q (%v), want %q", user, data, err, msg)
		}
	}
	// Messages returns a copy.
	got[0].Data[0] = 'X'
	if s.Messages()[0].Data[0] == 'X' {
		t.Error("Messages shares memory with the sink")
	}
}

func TestSinkFailures(t *testing.T) {
	t.Parallel()
	s, _ := newTestSink(t)
	tests := []struct {
		name     string
		dataErr  error
		to       []string
		wantCode int
	}{
		{"unstorable recipient", nil, []string{"a/b@example.test"}, 550},
		{"injected data error", &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}, []string{"c@example.test"}, 451},
		{"injected permanent error", &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "no"}, []string{"c@example.test"}, 554},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.SetDataError(tt.dataErr)
			defer s.SetDataError(nil)
			err := sendToSink(t, s, "x@example.test", tt.to, crlf("Subject: x", "", "x"))
			var se *smtp.SMTPError
			if !errors.As(err, &se) || se.Code != tt.wantCode {
				t.Fatalf("send = %v, want SMTP error %d", err, tt.wantCode)
			}
		})
	}
	if n := len(s.Messages()); n != 0 {
		t.Errorf("sink kept %d rejected messages", n)
	}
	// Delivery works again once the error is cleared.
	if err := sendToSink(t, s, "x@example.test", []string{"c@example.test"}, crlf("Subject: ok", "", "x")); err != nil {
		t.Fatalf("send after clearing the error: %v", err)
	}
}

func TestSinkRejectsOversizedMessage(t *testing.T) {
	t.Parallel()
	s, _ := newTestSink(t)
	line := strings.Repeat("a", 998) + "\r\n"
	big := []byte("Subject: big\r\n\r\n" + strings.Repeat(line, testSinkMaxBytes/len(line)+2))
	err := sendToSink(t, s, "x@example.test", []string{"c@example.test"}, big)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 552 {
		t.Fatalf("send of %d bytes = %v, want 552", len(big), err)
	}
}

func TestSinkWaitForTimesOut(t *testing.T) {
	t.Parallel()
	s, _ := newTestSink(t)
	if _, err := s.WaitFor(1, 10*time.Millisecond); err == nil {
		t.Fatal("WaitFor on an empty sink succeeded")
	}
	if got, err := s.WaitFor(0, time.Millisecond); err != nil || len(got) != 0 {
		t.Fatalf("WaitFor(0) = %v, %v", got, err)
	}
}

func TestSinkWaitForWakesUp(t *testing.T) {
	t.Parallel()
	s, _ := newTestSink(t)
	done := make(chan error, 1)
	go func() {
		_, err := s.WaitFor(2, testSinkWait)
		done <- err
	}()
	for i := range 2 {
		if err := sendToSink(t, s, "x@example.test", []string{"c@example.test"}, crlf("Subject: n", "", string(rune('0'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestSinkCloseIdempotent(t *testing.T) {
	t.Parallel()
	s, _ := newTestSink(t)
	for range 2 {
		if err := s.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
	}
	if _, err := smtp.Dial(s.Addr); err == nil {
		t.Error("sink still accepts connections after Close")
	}
}

func TestSinkDiscardMode(t *testing.T) {
	t.Parallel()
	s, md := newTestSink(t)
	s.SetDiscard(true)
	msg := crlf("Subject: dropped", "", "line", "")
	for range 3 {
		if err := sendToSink(t, s, "x@example.test", []string{"a@example.test"}, msg); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Discarded(); n != 3 {
		t.Fatalf("Discarded() = %d, want 3", n)
	}
	if got := s.Messages(); len(got) != 0 {
		t.Fatalf("discard mode kept %d messages", len(got))
	}
	if entries, _ := os.ReadDir(md.root); len(entries) != 0 {
		t.Fatalf("discard mode delivered into the maildir root: %v", entries)
	}
	s.SetDiscard(false)
	if err := sendToSink(t, s, "x@example.test", []string{"a@example.test"}, msg); err != nil {
		t.Fatal(err)
	}
	if got, err := s.WaitFor(1, testSinkWait); err != nil || len(got) != 1 {
		t.Fatalf("after discard mode: %v, %d messages", err, len(got))
	}
}
