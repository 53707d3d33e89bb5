package smtpfront

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/proxy"
)

func TestExpectReply(t *testing.T) {
	tests := []struct {
		in, err string // err: "" for success, else a part of the error
		want    int
		code    int // of an *smtp.SMTPError
		enh     smtp.EnhancedCode
		msg     string
	}{
		{in: "220 mail.example.com ESMTP\r\n", want: 220},
		{in: "220-first\r\n220-second\r\n220 last\r\n", want: 220},
		{in: "220\r\n", want: 220},
		{in: "250-a\r\n250 b\r\n", want: 250},
		{in: "554 5.7.1 no service for you\r\n", want: 220, code: 554, enh: smtp.EnhancedCode{5, 7, 1}, msg: "no service for you"},
		{in: "421-4.3.2 busy\r\n421 4.3.2 try later\r\n", want: 220, code: 421, enh: smtp.EnhancedCode{4, 3, 2}, msg: "busy\ntry later"},
		{in: "454 TLS not available\r\n", want: 220, code: 454, enh: smtp.NoEnhancedCode, msg: "TLS not available"},
		{in: "220-a\r\n250 b\r\n", want: 220, err: "codes 220 and 250"},
		{in: "hello\r\n", want: 220, err: "malformed"},
		{in: "22\r\n", want: 220, err: "malformed"},
		{in: "220xfoo\r\n", want: 220, err: "malformed"},
		{in: "999 x\r\n", want: 220, err: "malformed"},
		{in: "220 " + strings.Repeat("x", 2000) + "\r\n", want: 220, err: "longer than"},
		{in: strings.Repeat("250-x\r\n", 200), want: 250, err: "longer than 100 lines"},
		{in: "220 cut", want: 220, err: "EOF"},
	}
	for _, tt := range tests {
		raw, err := expectReply(bufio.NewReaderSize(strings.NewReader(tt.in), 1024), tt.want)
		var se *smtp.SMTPError
		switch {
		case tt.code != 0:
			if !errors.As(err, &se) || se.Code != tt.code || se.EnhancedCode != tt.enh || se.Message != tt.msg {
				t.Errorf("%q: err %#v, want code %d %v %q", tt.in, err, tt.code, tt.enh, tt.msg)
			}
		case tt.err != "":
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err %v, want %q", tt.in, err, tt.err)
			}
		default:
			if err != nil || string(raw) != tt.in {
				t.Errorf("%q: got %q, %v", tt.in, raw, err)
			}
		}
	}
}

func TestOffersStartTLS(t *testing.T) {
	for in, want := range map[string]bool{
		"250-mail.example.com\r\n250-SIZE 1000\r\n250 STARTTLS\r\n": true,
		"250-mail.example.com\r\n250-starttls\r\n250 8BITMIME\r\n":  true,
		"250-mail.example.com\r\n250 8BITMIME\r\n":                  false,
		"250 STARTTLS\r\n":           false, // the first line is the host
		"250-x\r\n250 STARTTLSX\r\n": false,
	} {
		if got := offersStartTLS([]byte(in)); got != want {
			t.Errorf("offersStartTLS(%q) = %v, want %v", in, got, want)
		}
	}
}

func FuzzExpectReply(f *testing.F) {
	for _, s := range []string{"220 ok\r\n", "250-a\r\n250 b\r\n", "554 5.7.1 no\r\n", "421-4.3.2 a\r\n421 4.3.2 b\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		raw, err := expectReply(bufio.NewReaderSize(strings.NewReader(string(in)), 1024), 250)
		if err == nil && (len(raw) == 0 || len(raw) > len(in) || string(raw) != string(in[:len(raw)])) {
			t.Fatalf("reply %q is not a prefix of the input", raw)
		}
		var se *smtp.SMTPError
		if errors.As(err, &se) && (se.Code < 200 || se.Code > 599 || se.Code == 250) {
			t.Fatalf("SMTPError with code %d", se.Code)
		}
	})
}

// scriptedUpstream answers the plaintext part of a STARTTLS session with
// the given replies (one per expected command, the first is the greeting).
func scriptedUpstream(t *testing.T, replies ...string) net.Conn {
	t.Helper()
	client, server := net.Pipe()
	t.Cleanup(func() { client.Close(); server.Close() })
	go func() {
		br := bufio.NewReader(server)
		for i, r := range replies {
			if i > 0 {
				if _, err := br.ReadString('\n'); err != nil {
					return
				}
			}
			if _, err := server.Write([]byte(r)); err != nil {
				return
			}
		}
		// Wait for the client to close (or a TLS ClientHello).
		br.ReadByte()
	}()
	return client
}

func TestStartTLSFailures(t *testing.T) {
	d := &proxy.Dialer{Addr: "smtp.example.test:587", Mode: proxy.TLSStartTLS, TLS: &tls.Config{ServerName: "smtp.example.test"}, HandshakeTimeout: time.Second}
	tests := []struct {
		name    string
		replies []string
		want    string
	}{
		{"refusing greeting", []string{"554 5.7.1 go away\r\n"}, "greeting: SMTP error 554"},
		{"no STARTTLS", []string{"220 hi\r\n", "250-hi\r\n250 8BITMIME\r\n"}, "does not offer STARTTLS"},
		{"STARTTLS refused", []string{"220 hi\r\n", "250-hi\r\n250 STARTTLS\r\n", "454 4.7.0 TLS not available\r\n"}, "STARTTLS: SMTP error 454"},
		// A reply smuggled behind the STARTTLS reply would be read as if it
		// came over TLS (the CVE-2011-0411 kind of injection).
		{"injection", []string{"220 hi\r\n", "250-hi\r\n250 STARTTLS\r\n", "220 go ahead\r\n250 injected\r\n"}, "sent data behind its STARTTLS reply"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := scriptedUpstream(t, tt.replies...)
			_, _, _, err := startTLS(context.Background(), conn, d, "front.test")
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, proxy.ErrUpstreamUnavailable) {
				t.Fatalf("err %v, want %q and ErrUpstreamUnavailable", err, tt.want)
			}
			if !strings.Contains(err.Error(), "upstream_tls: implicit") {
				t.Fatalf("err %v lacks the fix", err)
			}
		})
	}
}

func TestStartTLSCancelled(t *testing.T) {
	d := &proxy.Dialer{Addr: "smtp.example.test:587", Mode: proxy.TLSStartTLS, TLS: &tls.Config{ServerName: "smtp.example.test"}, HandshakeTimeout: time.Second}
	client, server := net.Pipe()
	defer server.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	// The upstream never greets.
	_, _, _, err := startTLS(ctx, client, d, "front.test")
	if err == nil || !errors.Is(err, proxy.ErrUpstreamUnavailable) {
		t.Fatalf("err %v, want ErrUpstreamUnavailable", err)
	}
}

// countConn counts the writes that reach the connection.
type countConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countConn) Write(b []byte) (int, error) { c.writes.Add(1); return c.Conn.Write(b) }

// TestRecordBatcher: a large write of the message leaves as one write of
// TLS records instead of one per record, and arrives intact; small writes
// and what TLS sends on its own (close_notify) pass straight through.
func TestRecordBatcher(t *testing.T) {
	pki := testkit.NewPKI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(tls.Server(c, pki.Server))
		got <- b
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cc := &countConn{Conn: raw}
	batch := &recordBatcher{Conn: cc}
	tc := tls.Client(batch, &tls.Config{RootCAs: pki.Pool(), ServerName: "localhost"})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	uc := &upstreamConn{Conn: tc, raw: raw, batch: batch}
	want := testkit.DottedMessage(encBufSize / 2)
	for _, tt := range []struct {
		size   int
		writes int64
	}{{encBufSize / 2, 1}, {100, 1}, {maxTLSRecord + 1, 1}, {encBufSize / 2, 1}} {
		before := cc.writes.Load()
		if n, err := uc.Write(want[:tt.size]); err != nil || n != tt.size {
			t.Fatalf("write of %d: %d, %v", tt.size, n, err)
		}
		if w := cc.writes.Load() - before; w != tt.writes {
			t.Fatalf("a write of %d bytes took %d writes, want %d", tt.size, w, tt.writes)
		}
	}
	// The end of a message: its last piece and the end-of-data line leave
	// together when the reply is read.
	before := cc.writes.Load()
	uc.holdWrites()
	for _, p := range [][]byte{want[:maxTLSRecord+1], want[:10], []byte("\r\n.\r\n")} {
		if _, err := uc.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	if w := cc.writes.Load() - before; w != 0 {
		t.Fatalf("%d writes while held", w)
	}
	tc.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	uc.Read(make([]byte, 10)) // times out: the other side only reads
	if w := cc.writes.Load() - before; w != 1 {
		t.Fatalf("held writes left in %d writes, want 1", w)
	}
	before = cc.writes.Load()
	tc.Close()
	if cc.writes.Load() == before {
		t.Fatal("close_notify was held back")
	}
	var all []byte
	for _, n := range []int{encBufSize / 2, 100, maxTLSRecord + 1, encBufSize / 2, maxTLSRecord + 1, 10} {
		all = append(all, want[:n]...)
	}
	all = append(all, "\r\n.\r\n"...)
	if b := <-got; !bytes.Equal(b, all) {
		t.Fatalf("the other side got %d bytes, want %d as sent", len(b), len(all))
	}
}

// TestLoginEndlessReply: an upstream whose greeting never ends (implicit
// TLS, where go-smtp's client reads it) fails the login once it has sent
// more than a login needs, instead of being read until the login timeout.
func TestLoginEndlessReply(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		line := []byte(strings.Repeat("220-endless greeting\r\n", 512))
		for {
			if _, err := server.Write(line); err != nil {
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := &proxy.Dialer{Addr: "smtp.example.test:465", Mode: proxy.TLSImplicit, HandshakeTimeout: time.Second}
	_, err := LoginUpstream(ctx, client, d, proxy.Account{Identity: "alice@example.test"}, "token", LoginOptions{})
	if err == nil || !strings.Contains(err.Error(), "during login") || !errors.Is(err, proxy.ErrUpstreamUnavailable) {
		t.Fatalf("err %v, want the login bound and ErrUpstreamUnavailable", err)
	}
}
