package memupstream

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/internal/xoauth2"
)

const (
	testUser  = "alice@example.com"
	goodToken = "good-token"
	// ioTimeout bounds every read and write of a test, so a broken server
	// fails the test instead of hanging it.
	ioTimeout = 10 * time.Second
)

var errBadToken = errors.New("bad token")

func validate(user, token string) error {
	if token != goodToken {
		return errBadToken
	}
	return nil
}

func start(t *testing.T) *Server {
	t.Helper()
	s := MustStart(t, Options{Validate: validate})
	s.AddUser(testUser)
	return s
}

// wire is a raw IMAP client for transcript tests.
type wire struct {
	t  *testing.T
	c  *tls.Conn
	br *bufio.Reader
}

func dialWire(t *testing.T, s *Server) *wire {
	t.Helper()
	c, err := tls.Dial("tcp", s.Addr(), s.ClientTLS())
	if err != nil {
		t.Fatalf("dialing: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatal(err)
	}
	w := &wire{t: t, c: c, br: bufio.NewReader(c)}
	w.expectPrefix("* OK ")
	return w
}

func (w *wire) send(line string) {
	w.t.Helper()
	if _, err := io.WriteString(w.c, line+"\r\n"); err != nil {
		w.t.Fatalf("writing %q: %v", line, err)
	}
}

func (w *wire) line() (string, error) {
	l, err := w.br.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}

func (w *wire) expectPrefix(prefix string) string {
	w.t.Helper()
	l, err := w.line()
	if err != nil {
		w.t.Fatalf("reading, want %q...: %v", prefix, err)
	}
	if !strings.HasPrefix(l, prefix) {
		w.t.Fatalf("got %q, want %q...", l, prefix)
	}
	return l
}

func (w *wire) expectEOF() {
	w.t.Helper()
	if l, err := w.line(); err == nil {
		w.t.Fatalf("got %q, want the connection closed", l)
	}
}

func ir(user, token string) string { return xoauth2.Encode(user, token) }

func TestCAFile(t *testing.T) {
	s, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(s.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, s.CAPEM()) || !bytes.HasPrefix(b, []byte("-----BEGIN CERTIFICATE-----")) {
		t.Errorf("ca file does not hold the CA PEM: %q", b)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.CAFile()); !os.IsNotExist(err) {
		t.Errorf("temporary ca file left after Close: %v", err)
	}
}

func TestCAFileInDir(t *testing.T) {
	dir := t.TempDir()
	s := MustStart(t, Options{Dir: dir})
	if want := dir + string(os.PathSeparator) + CAFileName; s.CAFile() != want {
		t.Errorf("CAFile = %q, want %q", s.CAFile(), want)
	}
}

func TestTranscripts(t *testing.T) {
	type step struct{ send, want string } // want is a prefix; "" send only reads
	tests := []struct {
		name  string
		fault Fault
		steps []step
		eof   bool
	}{
		{"initial response", FaultNone, []step{
			{"a AUTHENTICATE XOAUTH2 " + ir(testUser, goodToken), "a OK [CAPABILITY IMAP4rev1"},
			{"b SELECT INBOX", "* "},
		}, false},
		{"two steps", FaultNone, []step{
			{"a AUTHENTICATE XOAUTH2", "+ "},
			{ir(testUser, goodToken), "a OK "},
		}, false},
		{"rejected", FaultNone, []step{
			{"a AUTHENTICATE XOAUTH2 " + ir(testUser, "stale"), "+ eyJ"},
			{"", "a NO [AUTHENTICATIONFAILED]"},
		}, false},
		{"rejected with non-empty answer", FaultNone, []step{
			{"a AUTHENTICATE XOAUTH2 " + ir(testUser, "stale"), "+ eyJ"},
			{"eA==", "a BAD "},
		}, false},
		{"malformed response", FaultNone, []step{
			{"a AUTHENTICATE XOAUTH2 " + base64.StdEncoding.EncodeToString([]byte("user=x")), "a NO [AUTHENTICATIONFAILED]"},
		}, false},
		{"password login refused", FaultNone, []step{
			{"a LOGIN alice secret", "a NO [AUTHENTICATIONFAILED]"},
		}, false},
		{"other mechanism", FaultNone, []step{
			{"a AUTHENTICATE PLAIN", "a NO "},
		}, false},
		{"unknown user", FaultNone, []step{
			{"a AUTHENTICATE XOAUTH2 " + ir("bob@example.com", goodToken), "a OK "},
			{`b LIST "" ""`, "b BAD " + NotConnectedText},
			{"c NOOP", "c OK "},
		}, false},
		{"not connected", FaultNotConnected, []step{
			{"a AUTHENTICATE XOAUTH2 " + ir(testUser, goodToken), "a OK "},
			{`b LIST "" ""`, "b BAD " + NotConnectedText},
			{"c SELECT INBOX", "c BAD " + NotConnectedText},
			{"d CAPABILITY", "* CAPABILITY "},
		}, false},
		{"token expired", FaultTokenExpired, []step{
			{"a AUTHENTICATE XOAUTH2 " + ir(testUser, goodToken), "* BYE " + TokenExpiredText},
		}, true},
		{"close on login", FaultCloseOnLogin, []step{
			{"a AUTHENTICATE XOAUTH2 " + ir(testUser, goodToken), ""},
		}, true},
		{"close after login", FaultCloseAfterLogin, []step{
			{"a AUTHENTICATE XOAUTH2 " + ir(testUser, goodToken), "a OK "},
			{"b SELECT INBOX", ""},
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t)
			s.SetFault(testUser, tt.fault, -1)
			w := dialWire(t, s)
			for _, st := range tt.steps {
				w.send(st.send)
				if st.want != "" {
					w.expectPrefix(st.want)
				}
			}
			if tt.eof {
				w.expectEOF()
			}
		})
	}
}

func TestChallengeJSON(t *testing.T) {
	s := MustStart(t, Options{Validate: validate, Scope: "https://outlook.office.com/"})
	s.AddUser(testUser)
	w := dialWire(t, s)
	w.send("a AUTHENTICATE XOAUTH2 " + ir(testUser, "stale"))
	l := w.expectPrefix("+ ")
	ch, err := xoauth2.DecodeChallenge(strings.TrimPrefix(l, "+ "))
	if err != nil {
		t.Fatal(err)
	}
	want := xoauth2.Challenge{Status: "401", Schemes: "bearer", Scope: "https://outlook.office.com/"}
	if ch != want {
		t.Errorf("challenge = %+v, want %+v", ch, want)
	}
}

func TestFaultCount(t *testing.T) {
	s := start(t)
	s.SetFault(testUser, FaultTokenExpired, 1)
	w := dialWire(t, s)
	w.send("a AUTHENTICATE XOAUTH2 " + ir(testUser, goodToken))
	w.expectPrefix("* BYE ")
	w = dialWire(t, s)
	w.send("a AUTHENTICATE XOAUTH2 " + ir(testUser, goodToken))
	w.expectPrefix("a OK ")

	s.SetFault(testUser, FaultNotConnected, -1)
	s.SetFault(testUser, FaultNone, 0)
	w = dialWire(t, s)
	w.send("a AUTHENTICATE XOAUTH2 " + ir(testUser, goodToken))
	w.expectPrefix("a OK ")
	w.send("b SELECT INBOX")
	w.expectPrefix("* ")
}

// TestClient logs in with go-imap's client, fetches an appended message and
// sees another one arrive during IDLE.
func TestClient(t *testing.T) {
	s := start(t)
	msg := []byte("Subject: one\r\n\r\nbody one\r\n")
	if err := s.Append(testUser, "INBOX", msg); err != nil {
		t.Fatal(err)
	}
	watch, exists := testkit.ExistsWatcher()
	c, err := imapclient.DialTLS(s.Addr(), &imapclient.Options{TLSConfig: s.ClientTLS(), UnilateralDataHandler: watch})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Authenticate(xoauth2.NewClient(testUser, goodToken)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	section := &imap.FetchItemBodySection{}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || !bytes.Equal(msgs[0].FindBodySection(section), msg) {
		t.Fatalf("fetched %+v, want the appended message", msgs)
	}

	testkit.IdleSeesExists(t, c, exists, 2, ioTimeout, func() error {
		return s.Append(testUser, "INBOX", []byte("Subject: two\r\n\r\nbody two\r\n"))
	})
}

func TestClientRejected(t *testing.T) {
	s := start(t)
	c, err := imapclient.DialTLS(s.Addr(), &imapclient.Options{TLSConfig: s.ClientTLS()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Authenticate(xoauth2.NewClient(testUser, "stale"))
	var imapErr *imap.Error
	if !errors.As(err, &imapErr) || imapErr.Code != imap.ResponseCodeAuthenticationFailed {
		t.Fatalf("Authenticate = %v, want NO [AUTHENTICATIONFAILED]", err)
	}
}

func TestAppend(t *testing.T) {
	s := start(t)
	if err := s.Append("nobody", "INBOX", []byte("x")); err == nil {
		t.Error("Append to an unknown user succeeded")
	}
	if err := s.Append(testUser, "Archive", []byte("Subject: a\r\n\r\na\r\n")); err != nil {
		t.Fatalf("Append to a new mailbox: %v", err)
	}
	st, err := s.user(testUser).Status("Archive", &imap.StatusOptions{NumMessages: true})
	if err != nil || st.NumMessages == nil || *st.NumMessages != 1 {
		t.Errorf("Archive status = %+v, %v; want 1 message", st, err)
	}
}

func TestParseResponse(t *testing.T) {
	tests := []struct {
		in, user, token string
		ok              bool
	}{
		{"user=a@b\x01auth=Bearer tok\x01\x01", "a@b", "tok", true},
		{"user=a@b\x01auth=bearer tok\x01\x01", "a@b", "tok", true},
		{"auth=Bearer tok\x01user=a@b\x01\x01", "a@b", "tok", true},
		{"user=\x01auth=Bearer \x01\x01", "", "", true},
		{"user=a@b\x01auth=Bearer tok", "", "", false},
		{"user=a@b\x01\x01", "", "", false},
		{"user=a@b\x01auth=Basic dG9r\x01\x01", "", "", false},
		{"user=a@b\x01authBearer\x01\x01", "", "", false},
		{"", "", "", false},
	}
	for _, tt := range tests {
		user, token, err := parseResponse([]byte(tt.in))
		if (err == nil) != tt.ok || user != tt.user || token != tt.token {
			t.Errorf("parseResponse(%q) = %q, %q, %v; want %q, %q, ok=%v", tt.in, user, token, err, tt.user, tt.token, tt.ok)
		}
	}
}
