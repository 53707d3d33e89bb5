package smtpfront

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/proxy"
)

// errNoFuzzUpstream is the upstream of the session fuzz target: a login
// that passes the local check ends in a temporary failure.
var errNoFuzzUpstream = errors.New("the fuzz target has no upstream")

// fuzzSessionTimeout bounds one fuzzed session (its input is finite and
// the client hangs up after it).
const fuzzSessionTimeout = 5 * time.Second

// FuzzSession runs the front's whole dialogue before an upstream session
// (greeting, EHLO/HELO, STARTTLS refusal, AUTH PLAIN and LOGIN with their
// SASL exchanges, MAIL/RCPT/DATA refused before AUTH, RSET, NOOP, QUIT,
// syntax errors, long lines) on arbitrary client bytes: it must end once
// the client hung up, never panic, and never answer a login with success
// (there is no upstream to log in to).
func FuzzSession(f *testing.F) {
	for _, seed := range []string{
		"EHLO client.test\r\nAUTH PLAIN " + b64("\x00"+testLogin+"\x00"+testPassword) + "\r\nQUIT\r\n",
		"EHLO client.test\r\nAUTH LOGIN\r\n" + b64(testLogin) + "\r\n" + b64(testPassword) + "\r\n",
		"EHLO c\r\nAUTH PLAIN\r\n" + b64("\x00"+testLogin+"\x00wrong") + "\r\nAUTH PLAIN =\r\nAUTH LOGIN *\r\n",
		"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhello\r\n.\r\nRSET\r\nNOOP\r\nQUIT\r\n",
		"EHLO c\r\nSTARTTLS\r\nAUTH XOAUTH2 dXNlcj0BAQ==\r\nBDAT 10 LAST\r\n0123456789",
		"EHLO " + strings.Repeat("x", 3000) + "\r\n",
		"\x00\xff\r\n\r\n\n\n",
		"",
	} {
		f.Add([]byte(seed))
	}
	auth := &fakeAuth{}
	gw := &proxy.Gateway{Auth: auth, Tokens: &fakeTokens{version: map[string]int{}},
		Upstream: func(proxy.Account) (*proxy.Dialer, error) { return nil, errNoFuzzUpstream }}
	log := slog.New(slog.DiscardHandler)
	front := New(Options{Gateway: gw, AllowInsecureAuth: true, Log: log, Domain: "front.test"})
	f.Cleanup(func() { front.Close() })
	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := net.Pipe()
		defer client.Close()
		ctx, cancel := context.WithTimeout(context.Background(), fuzzSessionTimeout)
		defer cancel()
		pc := &proxy.Conn{Conn: server, ID: 1, Remote: netip.MustParseAddr("127.0.0.1"), Log: log}
		served := make(chan struct{})
		go func() {
			defer close(served)
			defer server.Close()
			front.ServeConn(ctx, pc)
		}()
		replies := make(chan string, 1)
		go func() {
			b, _ := io.ReadAll(io.LimitReader(client, 1<<20))
			replies <- string(b)
		}()
		client.SetWriteDeadline(time.Now().Add(fuzzSessionTimeout))
		client.Write(data)
		client.Close()
		select {
		case <-served:
		case <-ctx.Done():
			t.Fatal("the session did not end after the client hung up")
		}
		out := <-replies
		for _, line := range strings.Split(out, "\r\n") {
			if strings.HasPrefix(line, "235") {
				t.Fatalf("a login succeeded without an upstream: %q", out)
			}
		}
	})
}

// FuzzPlainServer feeds the PLAIN server arbitrary responses (split at
// '\n'; a first part "<nil>" means no initial response): it must end
// within two steps, call the authenticator at most once with bounded
// fields, and return only typed errors (go-smtp writes any other error's
// text to the client).
func FuzzPlainServer(f *testing.F) {
	f.Add([]byte("\x00" + testLogin + "\x00" + testPassword))
	f.Add([]byte("<nil>\nauthz\x00" + testLogin + "\x00" + testPassword))
	f.Add([]byte("no nul at all"))
	f.Add([]byte("\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		calls := 0
		var lens [3]int
		s := newPlainServer(func(authz, user, password string) error {
			calls++
			lens = [3]int{len(authz), len(user), len(password)}
			return replyAuthInvalid
		})
		for i, p := range bytes.Split(data, []byte("\n")) {
			if i == 0 && string(p) == "<nil>" {
				p = nil
			}
			_, done, err := s.Next(p)
			if _, typed := err.(*smtp.SMTPError); err != nil && !typed {
				t.Fatalf("untyped error %T %v", err, err)
			}
			if done {
				break
			}
			if i >= 1 {
				t.Fatalf("not done after %d steps", i+1)
			}
		}
		if calls > 1 || lens[0] > maxLoginField || lens[1] > maxLoginField || lens[2] > maxLoginField {
			t.Fatalf("authenticator called %d times with fields of %v bytes", calls, lens)
		}
	})
}
