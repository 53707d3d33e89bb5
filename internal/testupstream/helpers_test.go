package testupstream

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/xoauthd/xoauthd/internal/testidp"
)

// Limits and timeouts of the test clients.
const (
	testIOTimeout = 20 * time.Second // generous: anvil may delay a failure
	maxTestLine   = 64 << 10
	testSinkWait  = 10 * time.Second
	testTokenTTL  = time.Hour
)

// newRig starts an identity provider and a Dovecot that trusts its tokens.
func newRig(t *testing.T) (*testidp.IdP, *Dovecot) {
	t.Helper()
	idp := testidp.New(t, testidp.Options{})
	return idp, New(t, Options{JWTKey: idp.SigningKey()})
}

// lineConn is a line-oriented protocol client for hand-written transcripts.
type lineConn struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

// dialTLSFrom connects from the local address src (a 127.0.0.x, so anvil's
// per-IP failure penalty of one case does not slow down another) to addr
// and, if conf is set, starts TLS at once.
func dialFrom(t testing.TB, src, addr string, conf *tls.Config) *lineConn {
	t.Helper()
	d := net.Dialer{Timeout: testIOTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dialing %s from %s: %v", addr, src, err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(testIOTimeout)); err != nil {
		t.Fatal(err)
	}
	if conf != nil {
		tc := tls.Client(c, conf)
		if err := tc.Handshake(); err != nil {
			t.Fatalf("tls handshake with %s: %v", addr, err)
		}
		c = tc
	}
	return &lineConn{t: t, c: c, r: bufio.NewReaderSize(c, maxTestLine)}
}

func (l *lineConn) send(line string) {
	l.t.Helper()
	if _, err := l.c.Write([]byte(line + "\r\n")); err != nil {
		l.t.Fatalf("sending %q: %v", redact(line), err)
	}
}

func (l *lineConn) readLine() string {
	l.t.Helper()
	line, err := l.r.ReadSlice('\n')
	if err != nil {
		l.t.Fatalf("reading reply: %v", err)
	}
	return strings.TrimRight(string(line), "\r\n")
}

// expect reads one line and fails unless it starts with prefix.
func (l *lineConn) expect(prefix string) string {
	l.t.Helper()
	line := l.readLine()
	if !strings.HasPrefix(line, prefix) {
		l.t.Fatalf("got %q, want a line starting with %q", line, prefix)
	}
	return line
}

// expectSkipping reads lines until one starts with prefix, failing on a
// line that starts with none of skip.
func (l *lineConn) expectSkipping(prefix string, skip ...string) string {
	l.t.Helper()
	for {
		line := l.readLine()
		if strings.HasPrefix(line, prefix) {
			return line
		}
		ok := false
		for _, s := range skip {
			ok = ok || strings.HasPrefix(line, s)
		}
		if !ok {
			l.t.Fatalf("got %q, want a line starting with %q", line, prefix)
		}
	}
}

// redact keeps tokens out of test failure messages.
func redact(line string) string {
	if len(line) > 40 {
		return line[:20] + "…(redacted)"
	}
	return line
}

// crlf turns a readable message into one with CRLF line ends.
func crlf(lines ...string) []byte {
	return []byte(strings.Join(lines, "\r\n") + "\r\n")
}

// twoStepClient withholds the initial response of a SASL client until the
// server's empty "334 " challenge (RFC 4954 §4: a client must not put the
// initial response on the AUTH line when the line would get too long;
// Dovecot's submission-login refuses AUTH parameters over 1024 bytes, and
// XOAUTH2 responses with real tokens are longer).
type twoStepClient struct {
	sasl.Client
	initial []byte // held back from Start; nil once sent
}

func newTwoStep(c sasl.Client) *twoStepClient { return &twoStepClient{Client: c} }

func (c *twoStepClient) Start() (string, []byte, error) {
	mech, ir, err := c.Client.Start()
	c.initial = ir
	return mech, nil, err
}

func (c *twoStepClient) Next(challenge []byte) ([]byte, error) {
	if c.initial != nil && len(challenge) == 0 {
		ir := c.initial
		c.initial = nil
		return ir, nil
	}
	return c.Client.Next(challenge)
}
