package testupstream

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/internal/testidp"
	"github.com/xoauthd/xoauthd/internal/xoauth2"
)

// fetchAll logs in over IMAPS with XOAUTH2 (SASL-IR, RFC 4959) and returns
// every INBOX message as FETCH BODY.PEEK[] returns it.
func fetchAll(t *testing.T, d *Dovecot, user, token string) [][]byte {
	t.Helper()
	c := dialFrom(t, "127.0.0.1", d.IMAPAddr, d.TLSConfig())
	c.expect("* OK")
	c.send("A1 AUTHENTICATE XOAUTH2 " + xoauth2.Encode(user, token))
	c.expectSkipping("A1 OK", "* ")
	c.send("A2 SELECT INBOX")
	exists := -1
	for {
		line := c.readLine()
		if strings.HasPrefix(line, "A2 ") {
			if !strings.HasPrefix(line, "A2 OK") {
				t.Fatalf("select inbox: %q", line)
			}
			break
		}
		if n, ok := strings.CutSuffix(line, " EXISTS"); ok {
			exists, _ = strconv.Atoi(strings.TrimPrefix(n, "* "))
		}
	}
	if exists < 0 {
		t.Fatal("select inbox: no EXISTS response")
	}
	var msgs [][]byte
	if exists > 0 {
		c.send(fmt.Sprintf("A3 FETCH 1:%d (BODY.PEEK[])", exists))
		for range exists {
			msgs = append(msgs, c.readFetchLiteral())
		}
		c.expect("A3 OK")
	}
	c.send("A4 LOGOUT")
	c.expect("* BYE")
	c.expect("A4 OK")
	return msgs
}

// maxTestLiteral bounds a literal the test IMAP client reads.
const maxTestLiteral = 1 << 20

// readFetchLiteral reads "* n FETCH (BODY[] {size}", the literal and the
// closing ")" line (RFC 9051 §7.5.2).
func (l *lineConn) readFetchLiteral() []byte {
	l.t.Helper()
	line := l.expect("* ")
	open := strings.LastIndexByte(line, '{')
	if !strings.Contains(line, " FETCH ") || open < 0 || !strings.HasSuffix(line, "}") {
		l.t.Fatalf("got %q, want a FETCH response with a literal", line)
	}
	size, err := strconv.Atoi(line[open+1 : len(line)-1])
	if err != nil || size < 0 || size > maxTestLiteral {
		l.t.Fatalf("bad literal size in %q", line)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(l.r, body); err != nil {
		l.t.Fatalf("reading literal: %v", err)
	}
	l.expect(")")
	return body
}

// TestIMAPLoginFetchesDelivered: XOAUTH2 over IMAPS, SELECT INBOX, and a
// message put in by Deliver comes back byte for byte.
func TestIMAPLoginFetchesDelivered(t *testing.T) {
	t.Parallel()
	idp, d := newRig(t)
	msg := crlf("From: a@example.test", "To: Alice@Example.test", "Subject: hi", "", "body line", ".leading dot", "")
	if err := d.Deliver("Alice@Example.test", msg); err != nil {
		t.Fatal(err)
	}
	got := fetchAll(t, d, "alice@example.test", idp.MintAccessToken("alice@example.test", testTokenTTL))
	if len(got) != 1 || !bytes.Equal(got[0], msg) {
		t.Fatalf("inbox = %q, want [%q]", got, msg)
	}
}

// TestPOP3LoginStatRetr: AUTH XOAUTH2 in two steps over POP3S, STAT, RETR.
func TestPOP3LoginStatRetr(t *testing.T) {
	t.Parallel()
	idp, d := newRig(t)
	msg := crlf("Subject: pop", "", "one", ".two", "")
	if err := d.Deliver("bob@example.test", msg); err != nil {
		t.Fatal(err)
	}
	c := dialFrom(t, "127.0.0.1", d.POP3Addr, d.TLSConfig())
	c.expect("+OK")
	c.send("AUTH XOAUTH2")
	c.expect("+ ")
	c.send(xoauth2.Encode("bob@example.test", idp.MintAccessToken("bob@example.test", testTokenTTL)))
	c.expect("+OK")
	c.send("STAT")
	c.expect(fmt.Sprintf("+OK 1 %d", len(msg)))
	c.send("RETR 1")
	c.expect("+OK")
	var body bytes.Buffer
	for {
		line := c.readLine()
		if line == "." {
			break
		}
		body.WriteString(strings.TrimPrefix(line, ".") + "\r\n") // RFC 1939 §3 dot-unstuffing
	}
	if !bytes.Equal(body.Bytes(), msg) {
		t.Fatalf("RETR 1 = %q, want %q", body.Bytes(), msg)
	}
	c.send("QUIT")
	c.expect("+OK")
}

// TestSubmissionRelaysToIMAP: STARTTLS + AUTH XOAUTH2 on submission, send a
// message to another user; the sink gets it and the recipient fetches
// exactly the sink's bytes over IMAP.
func TestSubmissionRelaysToIMAP(t *testing.T) {
	t.Parallel()
	idp, d := newRig(t)
	msg := crlf("From: alice@example.test", "To: carol@example.test", "Subject: relay test",
		"Message-ID: <relay-1@example.test>", "", "Hello Carol,", ".a dot-stuffed line", "bye", "")

	c, err := smtp.DialStartTLS(d.SubmissionAddr, d.TLSConfig())
	if err != nil {
		t.Fatalf("submission starttls: %v", err)
	}
	defer c.Close()
	if err := c.Auth(newTwoStep(xoauth2.NewClient("alice@example.test", idp.MintAccessToken("alice@example.test", testTokenTTL)))); err != nil {
		t.Fatalf("submission xoauth2: %v", err)
	}
	if err := c.SendMail("alice@example.test", []string{"carol@example.test"}, bytes.NewReader(msg)); err != nil {
		t.Fatalf("sending: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Errorf("quit: %v", err)
	}

	sunk, err := d.Sink.WaitFor(1, testSinkWait)
	if err != nil {
		t.Fatal(err)
	}
	got := sunk[0]
	if got.From != "alice@example.test" || len(got.To) != 1 || got.To[0] != "carol@example.test" {
		t.Errorf("sink envelope = %q -> %q, want alice@example.test -> [carol@example.test]", got.From, got.To)
	}
	// Dovecot may prepend trace headers; everything we sent follows unchanged.
	if !bytes.HasSuffix(got.Data, msg) {
		t.Fatalf("sink data = %q, want it to end with %q", got.Data, msg)
	}
	if extra := got.Data[:len(got.Data)-len(msg)]; !isOneTraceHeader(extra) {
		t.Errorf("sink data starts with %q, want one Received: header before the message", extra)
	}
	inbox := fetchAll(t, d, "carol@example.test", idp.MintAccessToken("carol@example.test", testTokenTTL))
	if len(inbox) != 1 || !bytes.Equal(inbox[0], got.Data) {
		t.Fatalf("carol's inbox = %q, want [%q]", inbox, got.Data)
	}
}

// isOneTraceHeader reports whether b is one (possibly folded) Received:
// header field (RFC 5322 §3.6.7) ending in CRLF.
func isOneTraceHeader(b []byte) bool {
	lines := strings.SplitAfter(string(b), "\r\n")
	if len(lines) < 2 || lines[len(lines)-1] != "" || !strings.HasPrefix(lines[0], "Received: ") {
		return false
	}
	for _, l := range lines[1 : len(lines)-1] {
		if !strings.HasPrefix(l, " ") && !strings.HasPrefix(l, "\t") {
			return false
		}
	}
	return true
}

// recordingClient notes the challenges a sasl.Client answers.
type recordingClient struct {
	sasl.Client
	challenges [][]byte
}

func (r *recordingClient) Next(ch []byte) ([]byte, error) {
	r.challenges = append(r.challenges, ch)
	return r.Client.Next(ch)
}

// rejectedLogin tries XOAUTH2 with a bad token from source address src and
// returns the decoded challenge and the final reply line.
type rejectedLogin func(t *testing.T, d *Dovecot, src, user, token string) (xoauth2.Challenge, string)

func imapRejected(t *testing.T, d *Dovecot, src, user, token string) (xoauth2.Challenge, string) {
	c := dialFrom(t, src, d.IMAPAddr, d.TLSConfig())
	c.expect("* OK")
	c.send("A1 AUTHENTICATE XOAUTH2 " + xoauth2.Encode(user, token))
	ch := decodeChallenge(t, strings.TrimPrefix(c.expect("+ "), "+ "))
	c.send("") // RFC 4422 §3.6: the empty response ends the failed exchange
	return ch, c.expectSkipping("A1 ", "* ")
}

func pop3Rejected(t *testing.T, d *Dovecot, src, user, token string) (xoauth2.Challenge, string) {
	c := dialFrom(t, src, d.POP3Addr, d.TLSConfig())
	c.expect("+OK")
	c.send("AUTH XOAUTH2")
	c.expect("+ ")
	c.send(xoauth2.Encode(user, token))
	ch := decodeChallenge(t, strings.TrimPrefix(c.expect("+ "), "+ "))
	c.send("")
	return ch, c.readLine()
}

func submissionRejected(t *testing.T, d *Dovecot, src, user, token string) (xoauth2.Challenge, string) {
	lc := dialFrom(t, src, d.SubmissionAddr, nil)
	c, err := smtp.NewClientStartTLS(lc.c, d.TLSConfig())
	if err != nil {
		t.Fatalf("submission starttls: %v", err)
	}
	defer c.Close()
	rec := &recordingClient{Client: newTwoStep(xoauth2.NewClient(user, token))}
	err = c.Auth(rec)
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("submission auth with a bad token: got %v, want an SMTP error", err)
	}
	// The first challenge is the empty "334 " asking for the response.
	if len(rec.challenges) != 2 || len(rec.challenges[0]) != 0 {
		t.Fatalf("got challenges %q, want an empty one and the error", rec.challenges)
	}
	ch, err := xoauth2.ParseChallenge(rec.challenges[1])
	if err != nil {
		t.Fatalf("challenge %q: %v", rec.challenges[1], err)
	}
	return ch, fmt.Sprintf("%d %d.%d.%d %s", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message)
}

func decodeChallenge(t *testing.T, b64 string) xoauth2.Challenge {
	t.Helper()
	ch, err := xoauth2.DecodeChallenge(b64)
	if err != nil {
		t.Fatalf("challenge %q: %v", b64, err)
	}
	return ch
}

// TestXOAUTH2Rejected: a bad token gets the JSON challenge and, after the
// empty response, the protocol's authentication failure.
func TestXOAUTH2Rejected(t *testing.T) {
	t.Parallel()
	idp, d := newRig(t)
	other := testidp.New(t, testidp.Options{})
	const user = "dave@example.test"
	tokens := []struct {
		name  string
		token string
	}{
		{"wrong signing key", other.MintAccessToken(user, testTokenTTL)},
		{"expired", idp.MintAccessToken(user, -time.Minute)},
		{"token of another user", idp.MintAccessToken("erin@example.test", testTokenTTL)},
	}
	protos := []struct {
		name  string
		login rejectedLogin
		want  string
	}{
		{"imap", imapRejected, "A1 NO [AUTHENTICATIONFAILED]"},
		{"pop3", pop3Rejected, "-ERR [AUTH]"},
		{"submission", submissionRejected, "535 5.7.8 "},
	}
	for _, tok := range tokens {
		for _, p := range protos {
			src := d.SourceIP().String()
			t.Run(p.name+"/"+tok.name, func(t *testing.T) {
				t.Parallel()
				ch, final := p.login(t, d, src, user, tok.token)
				if !ch.Retry() || ch.Schemes != "bearer" {
					t.Errorf("challenge = %+v, want status 400/401 and schemes bearer", ch)
				}
				if !strings.HasPrefix(final, p.want) {
					t.Errorf("final reply = %q, want prefix %q", final, p.want)
				}
			})
		}
	}
}

// TestStopRestart: Stop makes every port refuse, is idempotent, and Restart
// brings Dovecot back on the same ports with the mail intact.
func TestStopRestart(t *testing.T) {
	t.Parallel()
	idp, d := newRig(t)
	msg := crlf("Subject: survives", "", "x")
	if err := d.Deliver("frank@example.test", msg); err != nil {
		t.Fatal(err)
	}
	addrs := []string{d.IMAPAddr, d.POP3Addr, d.SubmissionAddr}
	for range 2 {
		if err := d.Stop(); err != nil {
			t.Fatalf("stop: %v", err)
		}
	}
	for _, a := range addrs {
		if err := probe(a, false, nil, ""); err == nil {
			t.Errorf("%s still answers after Stop", a)
		}
	}
	if err := d.Restart(); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if got := []string{d.IMAPAddr, d.POP3Addr, d.SubmissionAddr}; fmt.Sprint(got) != fmt.Sprint(addrs) {
		t.Errorf("addresses after restart = %v, want %v", got, addrs)
	}
	inbox := fetchAll(t, d, "frank@example.test", idp.MintAccessToken("frank@example.test", testTokenTTL))
	if len(inbox) != 1 || !bytes.Equal(inbox[0], msg) {
		t.Fatalf("inbox after restart = %q, want [%q]", inbox, msg)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := d.Restart(); err == nil {
		t.Error("restart after close succeeded, want an error")
	}
}

// TestSubmissionAuthLineLimit pins a Dovecot 2.3 limit XOAUTH2 clients must
// respect: submission-login refuses AUTH parameters over 1024 bytes, so an
// initial response of a realistic token must follow an empty "334 "
// (RFC 4954 §4) instead of riding on the AUTH line.
func TestSubmissionAuthLineLimit(t *testing.T) {
	t.Parallel()
	idp, d := newRig(t)
	ir := xoauth2.Encode("judy@example.test", idp.MintAccessToken("judy@example.test", testTokenTTL))
	if len("XOAUTH2 "+ir) <= 1024 {
		t.Skipf("token too short (%d bytes) to cross the limit", len(ir))
	}
	tests := []struct {
		name  string
		lines []string
		want  []string
	}{
		{"initial response on the AUTH line", []string{"AUTH XOAUTH2 " + ir}, []string{"500 5.5.2 Line too long"}},
		{"initial response after 334", []string{"AUTH XOAUTH2", ir}, []string{"334 ", "235 2.7.0 "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialFrom(t, "127.0.0.1", d.SubmissionAddr, nil)
			c.expect("220 ")
			c.send("EHLO client.test")
			c.expectSkipping("250 ", "250-")
			c.send("STARTTLS")
			c.expect("220 ")
			tc := tls.Client(c.c, d.TLSConfig())
			c = &lineConn{t: t, c: tc, r: bufio.NewReaderSize(tc, maxTestLine)}
			c.send("EHLO client.test")
			c.expectSkipping("250 ", "250-")
			for i, line := range tt.lines {
				c.send(line)
				c.expect(tt.want[i])
			}
		})
	}
}
