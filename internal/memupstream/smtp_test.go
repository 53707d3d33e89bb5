package memupstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/internal/xoauth2"
)

const smtpMsg = "From: alice@example.com\r\nTo: alice@example.com\r\nSubject: hi\r\n\r\n.dot line\r\nbody\r\n"

// startSMTP starts a Server with testUser and an SMTP upstream on it.
func startSMTP(t *testing.T) (*Server, *SMTP) {
	t.Helper()
	s := start(t)
	u, err := s.StartSMTP(SMTPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := u.Close(); err != nil {
			t.Error(err)
		}
	})
	return s, u
}

// smtpClient dials u, says EHLO and STARTTLS.
func smtpClient(t *testing.T, s *Server, u *SMTP) *smtp.Client {
	t.Helper()
	c, err := smtp.DialStartTLS(u.Addr(), s.ClientTLS())
	if err != nil {
		t.Fatalf("dialing smtp: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	c.CommandTimeout = ioTimeout
	c.SubmissionTimeout = ioTimeout
	return c
}

// inbox returns the messages in user's INBOX, read through the in-process
// IMAP access.
func inbox(t *testing.T, s *Server, user string) []string {
	t.Helper()
	a := newMailAccess(s)
	defer a.close()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	c, err := a.open(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages == 0 {
		return nil
	}
	section := &imap.FetchItemBodySection{Peek: true}
	bufs, err := c.Fetch(imap.SeqSetNum(1, sel.NumMessages), &imap.FetchOptions{
		BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, b := range bufs {
		out = append(out, string(b.FindBodySection(section)))
	}
	return out
}

func TestSMTPDelivery(t *testing.T) {
	for _, tt := range []struct {
		name   string
		client sasl.Client
		rcpt   string
	}{
		{"two-step auth", xoauth2.NewContinuationClient(testUser, goodToken), testUser},
		{"initial response", xoauth2.NewClient(testUser, goodToken), strings.ToUpper(testUser)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, u := startSMTP(t)
			c := smtpClient(t, s, u)
			if ok, _ := c.Extension("AUTH"); !ok {
				t.Fatal("AUTH not offered after STARTTLS")
			}
			if err := c.Auth(tt.client); err != nil {
				t.Fatalf("Auth: %v", err)
			}
			if err := c.SendMail("sender@example.org", []string{tt.rcpt}, strings.NewReader(smtpMsg)); err != nil {
				t.Fatalf("SendMail: %v", err)
			}
			got := inbox(t, s, testUser)
			if len(got) != 1 || !strings.HasSuffix(got[0], smtpMsg) ||
				!strings.HasPrefix(got[0], "Return-Path: <sender@example.org>\r\nReceived: from ") {
				t.Fatalf("INBOX = %q, want the message with Return-Path and Received", got)
			}
		})
	}
}

func TestSMTPRefusals(t *testing.T) {
	s, u := startSMTP(t)
	c := smtpClient(t, s, u)
	if err := c.Mail("a@example.org", nil); smtpCode(err) != 530 {
		t.Errorf("MAIL before AUTH = %v, want 530", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", testUser, "pw")); smtpCode(err) != 504 {
		t.Errorf("AUTH PLAIN = %v, want 504", err)
	}
	if err := c.Auth(xoauth2.NewContinuationClient(testUser, goodToken)); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("a@example.org", nil); err != nil {
		t.Fatal(err)
	}
	err := c.Rcpt("someone@elsewhere.example", nil)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) {
		t.Errorf("RCPT to an unknown address = %v, want 550 5.1.1", err)
	}
	if err := c.Rcpt("not an address", nil); err == nil {
		t.Error("RCPT with a bad address succeeded")
	}
	w, err := c.Data()
	if err == nil {
		_ = w.Close()
		t.Error("DATA without recipients succeeded")
	}
	if got := inbox(t, s, testUser); len(got) != 0 {
		t.Errorf("INBOX = %q, want nothing delivered", got)
	}
}

func TestSMTPNoAuthWithoutTLS(t *testing.T) {
	_, u := startSMTP(t)
	c, err := smtp.Dial(u.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.CommandTimeout = ioTimeout
	if err := c.Hello("test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		t.Error("STARTTLS not offered")
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH offered before STARTTLS")
	}
}

// TestSMTPRejectedToken is the exact wire dialogue of a bad token: the JSON
// error challenge, the client's empty response, then 535 5.7.3.
func TestSMTPRejectedToken(t *testing.T) {
	s, u := startSMTP(t)
	tp := smtpWire(t, s, u)
	for _, st := range []struct{ send, want string }{
		{"AUTH XOAUTH2", "334 "},
		{xoauth2.Encode(testUser, "stale"), "334 eyJ"},
		{"", "535 5.7.3 "},
		{"AUTH XOAUTH2 " + xoauth2.Encode(testUser, goodToken), "235 "},
	} {
		if err := tp.PrintfLine("%s", st.send); err != nil {
			t.Fatal(err)
		}
		l, err := tp.ReadLine()
		if err != nil || !strings.HasPrefix(l, st.want) {
			t.Fatalf("after %.20q got %q, %v; want %q", st.send, l, err, st.want)
		}
	}
}

// smtpWire dials u and returns a raw connection after EHLO, STARTTLS and
// the second EHLO.
func smtpWire(t *testing.T, s *Server, u *SMTP) *textproto.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", u.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(ioTimeout))
	tp := textproto.NewConn(nc)
	expectCode := func(code int) {
		t.Helper()
		if _, _, err := tp.ReadResponse(code); err != nil {
			t.Fatalf("want %d: %v", code, err)
		}
	}
	expectCode(220)
	_ = tp.PrintfLine("EHLO test")
	expectCode(250)
	_ = tp.PrintfLine("STARTTLS")
	expectCode(220)
	tc := tls.Client(nc, s.ClientTLS())
	tp = textproto.NewConn(struct {
		io.Reader
		io.WriteCloser
	}{bufio.NewReader(tc), tc})
	_ = tp.PrintfLine("EHLO test")
	expectCode(250)
	return tp
}

func TestSMTPMessageTooLarge(t *testing.T) {
	s := start(t)
	u, err := s.StartSMTP(SMTPOptions{MaxMessageBytes: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	c := smtpClient(t, s, u)
	if err := c.Auth(xoauth2.NewContinuationClient(testUser, goodToken)); err != nil {
		t.Fatal(err)
	}
	err = c.SendMail("a@example.org", []string{testUser}, strings.NewReader(strings.Repeat("x", 1000)))
	if smtpCode(err) != 552 {
		t.Errorf("SendMail of 1000 bytes with a 64-byte limit = %v, want 552", err)
	}
	if got := inbox(t, s, testUser); len(got) != 0 {
		t.Errorf("INBOX = %q, want nothing delivered", got)
	}
}

func TestSMTPCloseIdempotent(t *testing.T) {
	s := start(t)
	u, err := s.StartSMTP(SMTPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	if err := u.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.StartSMTP(SMTPOptions{Addr: "127.0.0.1:-1"}); err == nil {
		t.Error("StartSMTP on a bad address succeeded")
	}
}

func smtpCode(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func TestSMTPEndlessLine(t *testing.T) {
	_, u := startSMTP(t)
	nc, err := net.Dial("tcp", u.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(ioTimeout))
	tp := textproto.NewConn(nc)
	if _, _, err := tp.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	// No line end at all: the server must give up at its line limit.
	go func() { _, _ = nc.Write([]byte(strings.Repeat("x", 4*maxSMTPLine))) }()
	if code, _, err := tp.ReadResponse(0); code != 500 {
		t.Errorf("reply to an endless line: %d, %v; want 500", code, err)
	}
	if _, err := tp.ReadLine(); err == nil {
		t.Error("connection still open after an endless line")
	}
}

// TestSMTPQueueID: each accepted message gets its own queue id in the reply,
// as from a real server.
func TestSMTPQueueID(t *testing.T) {
	s, u := startSMTP(t)
	c := smtpClient(t, s, u)
	if err := c.Auth(xoauth2.NewContinuationClient(testUser, goodToken)); err != nil {
		t.Fatal(err)
	}
	var replies []string
	for range 2 {
		if err := c.Mail("sender@example.org", nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt(testUser, nil); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(w, smtpMsg); err != nil {
			t.Fatal(err)
		}
		resp, err := w.CloseWithResponse()
		if err != nil {
			t.Fatal(err)
		}
		replies = append(replies, resp.StatusText)
	}
	if replies[0] != "2.0.0 Ok: queued as MEM000001" || replies[1] != "2.0.0 Ok: queued as MEM000002" {
		t.Fatalf("replies %q, want a queue id each", replies)
	}
}
