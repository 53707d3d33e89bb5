package pop3front

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/proxy"
)

// scripted runs a plaintext upstream on loopback that plays script: lines
// starting with "S: " are written, "C: " lines must be what the client sends
// ("C: *" matches any line), "CLOSE" closes. It returns a connection to it.
func scripted(t *testing.T, script ...string) net.Conn {
	t.Helper()
	srv, cli := testkit.TCPPair(t)
	done := make(chan struct{})
	t.Cleanup(func() { cli.Close(); <-done })
	go func() {
		defer close(done)
		defer srv.Close()
		srv.SetDeadline(time.Now().Add(ioTimeout))
		r := bufio.NewReaderSize(srv, 16<<10) // an XOAUTH2 line is long
		for _, step := range script {
			kind, text, _ := strings.Cut(step, ": ")
			switch kind {
			case "S":
				if _, err := srv.Write([]byte(text)); err != nil {
					return
				}
			case "C":
				line, err := readLine(r)
				if err != nil {
					t.Errorf("script: waiting for %q: %v", text, err)
					return
				}
				if text != "*" && string(line) != text {
					t.Errorf("script: client sent %q, want %q", line, text)
					return
				}
			case "WAIT":
				readLine(r) // until the client goes away
			case "CLOSE":
				return
			}
		}
	}()
	return cli
}

var testAcct = proxy.Account{Login: "alice", Identity: mailbox, Mailbox: mailbox}

func TestLoginUpstreamScripted(t *testing.T) {
	challenge := base64.StdEncoding.EncodeToString([]byte(`{"status":"401","schemes":"bearer","scope":"x"}`))
	tests := []struct {
		name     string
		mode     proxy.TLSMode
		script   []string
		rejected bool   // errors.Is ErrUpstreamRejected
		unavail  bool   // errors.Is ErrUpstreamUnavailable
		msg      string // in the error
		buffered string // left in the reader after success
	}{
		{
			name:     "bare plus continuation, data after +OK kept",
			script:   []string{"S: +OK hi\r\n", "C: AUTH XOAUTH2", "S: +\r\n", "C: *", "S: +OK User successfully authenticated.\r\n+OK early\r\n"},
			buffered: "+OK early\r\n",
		},
		{
			name:     "error challenge answered with empty line",
			script:   []string{"S: +OK\r\n", "C: AUTH XOAUTH2", "S: + \r\n", "C: *", "S: + " + challenge + "\r\n", "C: ", "S: -ERR [AUTH] Authentication failed.\r\n"},
			rejected: true, msg: "status 401",
		},
		{
			name:    "success after an error challenge is a protocol error",
			script:  []string{"S: +OK\r\n", "C: AUTH XOAUTH2", "S: + \r\n", "C: *", "S: + " + challenge + "\r\n", "C: ", "S: +OK\r\n"},
			unavail: true, msg: "answered the empty response",
		},
		{
			name:    "temporary failure after challenge",
			script:  []string{"S: +OK\r\n", "C: AUTH XOAUTH2", "S: + \r\n", "C: *", "S: + " + challenge + "\r\n", "C: ", "S: -ERR [SYS/TEMP] try later\r\n"},
			unavail: true, msg: "try later",
		},
		{
			name:    "mailbox in use",
			script:  []string{"S: +OK\r\n", "C: AUTH XOAUTH2", "S: + \r\n", "C: *", "S: -ERR [IN-USE] locked\r\n"},
			unavail: true, msg: "locked",
		},
		{
			name:   "permanent system error",
			script: []string{"S: +OK\r\n", "C: AUTH XOAUTH2", "S: + \r\n", "C: *", "S: -ERR [sys/perm] POP disabled\r\n"},
			msg:    "permanent system error",
		},
		{
			name:    "garbage after the response",
			script:  []string{"S: +OK\r\n", "C: AUTH XOAUTH2", "S: + \r\n", "C: *", "S: * what\r\n"},
			unavail: true,
		},
		{
			name:    "greeting too long",
			script:  []string{"S: +OK " + strings.Repeat("x", maxUpstreamLine), "WAIT"},
			unavail: true, msg: "line too long",
		},
		{
			name:    "busy on AUTH",
			script:  []string{"S: +OK\r\n", "C: AUTH XOAUTH2", "S: -ERR [SYS/TEMP] busy\r\n"},
			unavail: true,
		},
		{
			name:    "STLS refused",
			mode:    proxy.TLSStartTLS,
			script:  []string{"S: +OK\r\n", "C: STLS", "S: -ERR no\r\n"},
			unavail: true, msg: "upstream_tls: implicit",
		},
		{
			name:    "plaintext injected after STLS reply",
			mode:    proxy.TLSStartTLS,
			script:  []string{"S: +OK\r\n", "C: STLS", "S: +OK go\r\n+OK injected\r\n", "WAIT"},
			unavail: true, msg: "data after its STLS reply",
		},
		{
			name:    "closed after greeting",
			script:  []string{"S: +OK\r\n", "CLOSE"},
			unavail: true, msg: "AUTH XOAUTH2",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := scripted(t, tt.script...)
			d := &proxy.Dialer{Mode: cmp(tt.mode, proxy.TLSImplicit)}
			up, err := loginUpstream(t.Context(), conn, d, testAcct, "tok")
			if tt.rejected || tt.unavail || tt.msg != "" {
				if err == nil {
					t.Fatal("login succeeded, want an error")
				}
				if errors.Is(err, proxy.ErrUpstreamRejected) != tt.rejected || errors.Is(err, proxy.ErrUpstreamUnavailable) != tt.unavail {
					t.Errorf("error %q: rejected %v, unavailable %v; want %v, %v", err,
						errors.Is(err, proxy.ErrUpstreamRejected), errors.Is(err, proxy.ErrUpstreamUnavailable), tt.rejected, tt.unavail)
				}
				if !strings.Contains(err.Error(), tt.msg) {
					t.Errorf("error %q does not mention %q", err, tt.msg)
				}
				if _, werr := conn.Write([]byte("x")); !errors.Is(werr, net.ErrClosed) {
					t.Errorf("connection not closed after the error: %v", werr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer up.conn.Close()
			b, _ := up.r.Peek(up.r.Buffered())
			if string(b) != tt.buffered {
				t.Errorf("buffered after login: %q, want %q", b, tt.buffered)
			}
		})
	}
}

func cmp(mode, def proxy.TLSMode) proxy.TLSMode {
	if mode == "" {
		return def
	}
	return mode
}

// TestLoginUpstreamCancel: a cancelled context ends a login waiting for a
// silent upstream, and the connection is closed.
func TestLoginUpstreamCancel(t *testing.T) {
	conn := scripted(t, "WAIT")
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := loginUpstream(ctx, conn, &proxy.Dialer{Mode: proxy.TLSImplicit}, testAcct, "tok")
		errc <- err
	}()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, proxy.ErrUpstreamUnavailable) {
			t.Fatalf("got %v, want ErrUpstreamUnavailable", err)
		}
	case <-time.After(ioTimeout):
		t.Fatal("login did not end after cancel")
	}
}

// TestLoginUpstreamUser checks user=: the mailbox, or the identity when the
// account has no mailbox. The token never appears in an error.
func TestLoginUpstreamUser(t *testing.T) {
	for _, acct := range []proxy.Account{
		{Identity: "id@example.test", Mailbox: "shared@example.test"},
		{Identity: "id@example.test"},
	} {
		want := acct.Mailbox
		if want == "" {
			want = acct.Identity
		}
		blob := base64.StdEncoding.EncodeToString([]byte("user=" + want + "\x01auth=Bearer secret-tok\x01\x01"))
		conn := scripted(t, "S: +OK\r\n", "C: AUTH XOAUTH2", "S: + \r\n", "C: "+blob, "S: -ERR [AUTH] no\r\n")
		_, err := loginUpstream(t.Context(), conn, &proxy.Dialer{Mode: proxy.TLSImplicit}, acct, "secret-tok")
		if !errors.Is(err, proxy.ErrUpstreamRejected) {
			t.Fatalf("%+v: got %v, want rejection", acct, err)
		}
		if strings.Contains(err.Error(), "secret-tok") || strings.Contains(err.Error(), blob) {
			t.Fatalf("error carries the token: %v", err)
		}
	}
}

func TestRespCode(t *testing.T) {
	tests := map[string]string{
		"-ERR [SYS/TEMP] x":  "SYS/TEMP",
		"-ERR [in-use] x":    "IN-USE",
		"-ERR [AUTH]":        "AUTH",
		"-ERR no code":       "",
		"-ERR [unterminated": "",
		"+OK [SYS/TEMP]":     "",
	}
	for line, want := range tests {
		if got := respCode(line); got != want {
			t.Errorf("respCode(%q) = %q, want %q", line, got, want)
		}
	}
	if q := quote(strings.Repeat("x", 1000)); len(q) > maxQuoted+10 {
		t.Errorf("quote is not bounded: %d bytes", len(q))
	}
}
