package memupstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// Messages of the POP3 tests: the second has lines that need dot-stuffing.
const (
	pop3Msg1 = "Subject: one\r\n\r\nfirst body\r\n"
	pop3Msg2 = "Subject: two\r\nX-Dots: yes\r\n\r\n.hidden line\r\n..two dots\r\n.\r\nlast\r\n"
)

// startPOP3 starts a Server with testUser holding pop3Msg1 and pop3Msg2,
// and a POP3 upstream on it.
func startPOP3(t *testing.T) (*Server, *POP3) {
	t.Helper()
	s := start(t)
	for _, m := range []string{pop3Msg1, pop3Msg2} {
		if err := s.Append(testUser, "INBOX", []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	p, err := s.StartPOP3(POP3Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return s, p
}

// pop3Wire is a raw POP3 client for transcript tests.
type pop3Wire struct {
	t  *testing.T
	c  *tls.Conn
	tp *textproto.Reader
}

func dialPOP3(t *testing.T, s *Server, p *POP3) *pop3Wire {
	t.Helper()
	c, err := tls.Dial("tcp", p.Addr(), s.ClientTLS())
	if err != nil {
		t.Fatalf("dialing pop3: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatal(err)
	}
	w := &pop3Wire{t: t, c: c, tp: textproto.NewReader(bufio.NewReader(c))}
	w.expect("+OK ")
	return w
}

func (w *pop3Wire) send(line string) {
	w.t.Helper()
	if _, err := io.WriteString(w.c, line+"\r\n"); err != nil {
		w.t.Fatalf("writing %q: %v", line, err)
	}
}

// expect reads one line and checks its prefix.
func (w *pop3Wire) expect(prefix string) string {
	w.t.Helper()
	l, err := w.tp.ReadLine()
	if err != nil {
		w.t.Fatalf("reading, want %q...: %v", prefix, err)
	}
	if !strings.HasPrefix(l, prefix) {
		w.t.Fatalf("got %q, want %q...", l, prefix)
	}
	return l
}

// multiline sends cmd, expects a status line starting with status and
// returns the multi-line body that follows.
func (w *pop3Wire) multiline(cmd, status string) string {
	w.t.Helper()
	w.send(cmd)
	w.expect(status)
	return w.dotBody()
}

// dotBody reads a multi-line body, undoing the dot-stuffing.
func (w *pop3Wire) dotBody() string {
	w.t.Helper()
	b, err := w.tp.ReadDotBytes()
	if err != nil {
		w.t.Fatalf("reading a multi-line response: %v", err)
	}
	return string(b)
}

func (w *pop3Wire) expectEOF() {
	w.t.Helper()
	if l, err := w.tp.ReadLine(); err == nil {
		w.t.Fatalf("got %q, want the connection closed", l)
	}
}

// login authenticates as testUser in the two-line form.
func (w *pop3Wire) login() {
	w.t.Helper()
	w.send("AUTH XOAUTH2")
	w.expect("+ ")
	w.send(ir(testUser, goodToken))
	w.expect("+OK User successfully authenticated.")
}

// lf converts CRLF to LF, as ReadDotBytes returns bodies.
func lf(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }

func TestPOP3Transcripts(t *testing.T) {
	type step struct{ send, want string } // want is a line prefix; "" send only reads
	tests := []struct {
		name  string
		steps []step
		eof   bool
	}{
		{"two-line auth", []step{{"AUTH XOAUTH2", "+ "}, {ir(testUser, goodToken), "+OK User successfully"}}, false},
		{"initial response", []step{{"auth xoauth2 " + ir(testUser, goodToken), "+OK User successfully"}, {"NOOP", "+OK"}}, false},
		{"rejected token", []step{
			{"AUTH XOAUTH2", "+ "}, {ir(testUser, "stale"), "+ eyJ"},
			{"", "-ERR [AUTH] Authentication failure"}, {"STAT", "-ERR Command not valid before login"},
		}, false},
		{"cancelled", []step{{"AUTH XOAUTH2", "+ "}, {"*", "-ERR [AUTH] Authentication cancelled"}}, false},
		{"empty initial response", []step{{"AUTH XOAUTH2 =", "-ERR [AUTH] Invalid XOAUTH2 response"}}, false},
		{"bad base64", []step{{"AUTH XOAUTH2 !!!", "-ERR [AUTH] Invalid base64"}}, false},
		{"other mechanism", []step{{"AUTH PLAIN", "-ERR Unrecognized authentication type"}}, false},
		{"user pass", []step{{"USER alice", "-ERR [AUTH] Use AUTH XOAUTH2"}, {"PASS x", "-ERR [AUTH]"}}, false},
		{"unknown user", []step{{"AUTH XOAUTH2 " + ir("nobody@example.com", goodToken), "-ERR [SYS/PERM] No mailbox"}}, false},
		{"syntax", []step{{"", "-ERR Syntax error: empty command"}, {"RETRIEVE 1", "-ERR Syntax error"}, {"TOP 1 2 3", "-ERR Syntax error"}}, false},
		{"control character", []step{{"NO\x00P", "-ERR Syntax error: control character"}}, false},
		{"quit before login", []step{{"QUIT", "+OK Bye"}}, true},
		{"line too long", []step{{"NOOP " + strings.Repeat("x", maxPOP3Line), "-ERR Line too long"}}, true},
		{"auth line too long", []step{{"AUTH XOAUTH2", "+ "}, {strings.Repeat("A", maxPOP3AuthLine), "-ERR Line too long"}}, true},
		{"after login", []step{
			{"AUTH XOAUTH2 " + ir(testUser, goodToken), "+OK"},
			{"STAT", "+OK 2 "}, {"LIST 2", "+OK 2 "}, {"LIST 3", "-ERR No such message 3"},
			{"LIST 0", "-ERR Syntax error: not a message number"}, {"UIDL 1", "+OK 1 "},
			{"DELE 1", "+OK Message 1 deleted"}, {"DELE 1", "-ERR Message 1 already deleted"},
			{"RETR 1", "-ERR Message 1 already deleted"}, {"STAT", "+OK 1 "},
			{"RSET", "+OK Maildrop has 2 messages"}, {"AUTH XOAUTH2", "-ERR Command not valid after login"},
			{"TOP 1", "-ERR Syntax error: wrong number"}, {"TOP 1 x", "-ERR Syntax error: TOP needs"},
			{"QUIT", "+OK Bye (2 messages left)"},
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, p := startPOP3(t)
			w := dialPOP3(t, s, p)
			for _, st := range tt.steps {
				w.send(st.send)
				w.expect(st.want)
			}
			if tt.eof {
				w.expectEOF()
			}
		})
	}
}

func TestPOP3EndlessLine(t *testing.T) {
	s, p := startPOP3(t)
	w := dialPOP3(t, s, p)
	// No line end at all: the server must answer once its buffer is full
	// instead of reading for ever.
	go func() { _, _ = w.c.Write([]byte(strings.Repeat("N", 4*maxPOP3AuthLine))) }()
	w.expect("-ERR Line too long")
	w.expectEOF()
}

func TestPOP3TooManyErrors(t *testing.T) {
	s, p := startPOP3(t)
	w := dialPOP3(t, s, p)
	for range maxPOP3Errors {
		w.send("BOGUS")
		w.expect("-ERR")
	}
	w.expect("-ERR Too many errors")
	w.expectEOF()
}

func TestPOP3Capa(t *testing.T) {
	s, p := startPOP3(t)
	w := dialPOP3(t, s, p)
	if got := w.multiline("CAPA", "+OK"); !strings.Contains(got, "SASL XOAUTH2\n") || !strings.Contains(got, "UIDL\n") {
		t.Errorf("CAPA = %q, want SASL XOAUTH2 and UIDL", got)
	}
	if got := w.multiline("AUTH", "+OK"); got != "XOAUTH2\n" {
		t.Errorf("AUTH list = %q, want XOAUTH2", got)
	}
}

func TestPOP3Retrieve(t *testing.T) {
	s, p := startPOP3(t)
	w := dialPOP3(t, s, p)
	w.login()

	for _, tt := range []struct{ cmd, status, body string }{
		{"LIST", "+OK 2 messages", "1 " + strconv.Itoa(len(pop3Msg1)) + "\n2 " + strconv.Itoa(len(pop3Msg2)) + "\n"},
		{"RETR 2", "+OK " + strconv.Itoa(len(pop3Msg2)) + " octets", lf(pop3Msg2)},
		{"TOP 2 1", "+OK", "Subject: two\nX-Dots: yes\n\n.hidden line\n"},
		{"TOP 2 0", "+OK", "Subject: two\nX-Dots: yes\n\n"},
	} {
		if got := w.multiline(tt.cmd, tt.status); got != tt.body {
			t.Errorf("%s = %q, want %q", tt.cmd, got, tt.body)
		}
	}
	uidl := strings.Fields(w.multiline("UIDL", "+OK"))
	if len(uidl) != 4 || uidl[0] != "1" || uidl[2] != "2" || uidl[1] == uidl[3] {
		t.Errorf("UIDL = %q, want two distinct ids", uidl)
	}
}

func TestPOP3DeleteOnQuit(t *testing.T) {
	s, p := startPOP3(t)
	w := dialPOP3(t, s, p)
	w.login()
	w.send("DELE 1")
	w.expect("+OK")
	w.send("QUIT")
	w.expect("+OK Bye (1 messages left)")
	w.expectEOF()

	// The deletion is visible to IMAP, which shares the mailbox.
	st, err := s.user(testUser).Status("INBOX", &imap.StatusOptions{NumMessages: true})
	if err != nil || st.NumMessages == nil || *st.NumMessages != 1 {
		t.Fatalf("INBOX after QUIT = %+v, %v; want 1 message", st, err)
	}
	w = dialPOP3(t, s, p)
	w.login()
	if got := w.multiline("RETR 1", "+OK"); got != lf(pop3Msg2) {
		t.Errorf("RETR 1 after deleting the first = %q, want the second message", got)
	}
}

func TestPOP3NoDeleteWithoutQuit(t *testing.T) {
	s, p := startPOP3(t)
	w := dialPOP3(t, s, p)
	w.login()
	w.send("DELE 1")
	w.expect("+OK")
	w.send("NOOP") // the DELE has been handled once NOOP is answered
	w.expect("+OK")
	_ = w.c.Close()

	// A new session can lock the maildrop once the old one has ended, and
	// still sees both messages.
	deadline := time.Now().Add(ioTimeout)
	for {
		w = dialPOP3(t, s, p)
		w.send("AUTH XOAUTH2 " + ir(testUser, goodToken))
		if l := w.expect(""); strings.HasPrefix(l, "+OK") {
			break
		} else if !strings.HasPrefix(l, "-ERR [IN-USE]") || time.Now().After(deadline) {
			t.Fatalf("login after a dropped session: %q", l)
		}
	}
	w.send("STAT")
	w.expect("+OK 2 ")
}

func TestPOP3InUse(t *testing.T) {
	s, p := startPOP3(t)
	first := dialPOP3(t, s, p)
	first.login()
	second := dialPOP3(t, s, p)
	second.send("AUTH XOAUTH2 " + ir(testUser, goodToken))
	second.expect("-ERR [IN-USE]")
	first.send("QUIT")
	first.expect("+OK")
	first.expectEOF()
	second.send("AUTH XOAUTH2 " + ir(testUser, goodToken))
	second.expect("+OK")
}

func TestPOP3SeesIMAPAppends(t *testing.T) {
	s, p := startPOP3(t)
	if err := s.Append(testUser, "INBOX", []byte("Subject: three\r\n\r\n3\r\n")); err != nil {
		t.Fatal(err)
	}
	w := dialPOP3(t, s, p)
	w.login()
	w.send("STAT")
	w.expect("+OK 3 ")
}

func TestPOP3CloseEndsSessions(t *testing.T) {
	s := start(t)
	if err := s.Append(testUser, "INBOX", []byte(pop3Msg1)); err != nil {
		t.Fatal(err)
	}
	p, err := s.StartPOP3(POP3Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := dialPOP3(t, s, p)
	w.login()
	w.send("DELE 1")
	w.expect("+OK")
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	w.expectEOF()
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	st, err := s.user(testUser).Status("INBOX", &imap.StatusOptions{NumMessages: true})
	if err != nil || *st.NumMessages != 1 {
		t.Errorf("INBOX after Close = %+v, %v; want the message kept", st, err)
	}
}

func TestPOP3ListenError(t *testing.T) {
	s := start(t)
	if _, err := s.StartPOP3(POP3Options{Addr: "127.0.0.1:-1"}); err == nil {
		t.Fatal("StartPOP3 on a bad address succeeded")
	}
}

func TestMailAccessClosed(t *testing.T) {
	s := start(t)
	a := newMailAccess(s)
	a.close()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	if _, err := a.open(ctx, testUser); err == nil {
		t.Fatal("open after close succeeded")
	}
}

func TestMailAccessUnknownUser(t *testing.T) {
	s := start(t)
	a := newMailAccess(s)
	defer a.close()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	if _, err := a.open(ctx, "nobody@example.com"); err == nil {
		t.Fatal("open for an unknown user succeeded")
	}
}
