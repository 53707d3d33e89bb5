package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/testkit"
)

// tlsGreeting is what the test TLS servers write after the handshake.
const tlsGreeting = "* OK test upstream ready\r\n"

// startTLSServer serves implicit TLS with cert on a loopback port: after the
// handshake it writes tlsGreeting and reads until the client hangs up.
func startTLSServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	serveLoop(t, ln, func(c net.Conn) {
		if err := c.(*tls.Conn).Handshake(); err != nil {
			return
		}
		io.WriteString(c, tlsGreeting)
		io.Copy(io.Discard, c)
	})
	return ln.Addr().String()
}

// serveLoop runs handle on each connection of ln until the test ends.
// A connection accepted while the test is ending is closed at once: the
// cleanup has already closed the others, and a handler left reading it
// would keep wg.Wait from returning.
func serveLoop(t *testing.T, ln net.Listener, handle func(net.Conn)) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	closed := false
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				c.Close()
				return
			}
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		closed = true
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// readGreeting reads one line from c and checks it.
func readGreeting(t *testing.T, c net.Conn, want string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != want {
		t.Fatalf("greeting = %q, %v; want %q", line, err, want)
	}
	c.SetReadDeadline(time.Time{})
}

func TestDialerImplicitTLS(t *testing.T) {
	ca := testkit.NewCA(t)
	other := testkit.NewCA(t)
	now := time.Now()
	tests := []struct {
		name     string
		cert     tls.Certificate
		host     string // dialled host (the server listens on 127.0.0.1)
		caFile   string
		maxVer   uint16 // server's maximum TLS version; 0: default
		wantErr  string // substring of the error; "" for success
		certFail bool   // the error is a certificate verification failure
	}{
		{name: "trusted via ca_file", cert: ca.Leaf(t), host: "127.0.0.1", caFile: ca.WriteCAFile(t)},
		{name: "trusted via ca_file, dns name", cert: ca.Leaf(t), host: "localhost", caFile: ca.WriteCAFile(t)},
		{name: "unknown CA", cert: ca.Leaf(t), host: "127.0.0.1", wantErr: "is not trusted", certFail: true},
		{name: "other CA", cert: ca.Leaf(t), host: "127.0.0.1", caFile: other.WriteCAFile(t), wantErr: "set ca_file for a private CA", certFail: true},
		{name: "wrong host name", cert: ca.LeafBetween(t, now.Add(-time.Hour), now.Add(time.Hour), "mail.example.test"), host: "127.0.0.1", caFile: ca.WriteCAFile(t), wantErr: "not valid for that name", certFail: true},
		{name: "expired", cert: ca.LeafBetween(t, now.Add(-2*time.Hour), now.Add(-time.Hour), "localhost", "127.0.0.1"), host: "127.0.0.1", caFile: ca.WriteCAFile(t), wantErr: "has expired", certFail: true},
		{name: "not valid yet", cert: ca.LeafBetween(t, now.Add(time.Hour), now.Add(2*time.Hour), "localhost", "127.0.0.1"), host: "127.0.0.1", caFile: ca.WriteCAFile(t), wantErr: "has expired or is not valid yet", certFail: true},
		{name: "tls 1.1 refused", cert: ca.Leaf(t), host: "127.0.0.1", caFile: ca.WriteCAFile(t), maxVer: tls.VersionTLS11, wantErr: "tls handshake with"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := startTLSServer(t, &tls.Config{Certificates: []tls.Certificate{tt.cert}, MinVersion: tls.VersionTLS10, MaxVersion: tt.maxVer})
			_, port, _ := net.SplitHostPort(addr)
			d, err := NewDialer(net.JoinHostPort(tt.host, port), TLSImplicit, tt.caFile)
			if err != nil {
				t.Fatal(err)
			}
			conn, err := d.Dial(context.Background())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				defer conn.Close()
				tc, ok := conn.(*tls.Conn)
				if !ok || len(tc.ConnectionState().VerifiedChains) == 0 {
					t.Fatalf("Dial returned %T without verified chains", conn)
				}
				readGreeting(t, conn, tlsGreeting)
				return
			}
			if err == nil {
				conn.Close()
				t.Fatal("Dial succeeded, want an error")
			}
			t.Logf("error: %v", err)
			if !errors.Is(err, ErrUpstreamUnavailable) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v; want ErrUpstreamUnavailable and %q", err, tt.wantErr)
			}
			var verr *tls.CertificateVerificationError
			if got := errors.As(err, &verr); got != tt.certFail {
				t.Errorf("certificate verification error = %v, want %v (%v)", got, tt.certFail, err)
			}
		})
	}
}

func TestDialerSessionResumption(t *testing.T) {
	ca := testkit.NewCA(t)
	addr := startTLSServer(t, &tls.Config{Certificates: []tls.Certificate{ca.Leaf(t)}})
	d, err := NewDialer(addr, TLSImplicit, ca.WriteCAFile(t))
	if err != nil {
		t.Fatal(err)
	}
	for i, wantResume := range []bool{false, true, true} {
		conn, err := d.Dial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		// Reading lets the client take the TLS 1.3 session ticket.
		readGreeting(t, conn, tlsGreeting)
		if got := conn.(*tls.Conn).ConnectionState().DidResume; got != wantResume {
			t.Errorf("dial %d: DidResume = %v, want %v", i, got, wantResume)
		}
		conn.Close()
	}
}

func TestDialerStartTLS(t *testing.T) {
	ca := testkit.NewCA(t)
	cfg := &tls.Config{Certificates: []tls.Certificate{ca.Leaf(t)}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveLoop(t, ln, func(c net.Conn) {
		br := bufio.NewReader(c)
		io.WriteString(c, "220 ready\r\n")
		if line, _ := br.ReadString('\n'); line != "STARTTLS\r\n" {
			return
		}
		io.WriteString(c, "220 go ahead\r\n")
		tc := tls.Server(c, cfg)
		if tc.Handshake() != nil {
			return
		}
		io.WriteString(tc, tlsGreeting)
		io.Copy(io.Discard, tc)
	})

	d, err := NewDialer(ln.Addr().String(), TLSStartTLS, ca.WriteCAFile(t))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := d.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, ok := conn.(*tls.Conn); ok {
		t.Fatal("starttls mode returned a TLS connection before STARTTLS")
	}
	br := bufio.NewReader(conn)
	if line, _ := br.ReadString('\n'); line != "220 ready\r\n" {
		t.Fatalf("plain greeting = %q", line)
	}
	io.WriteString(conn, "STARTTLS\r\n")
	if line, _ := br.ReadString('\n'); line != "220 go ahead\r\n" {
		t.Fatalf("STARTTLS reply = %q", line)
	}
	tc, err := d.StartTLS(context.Background(), conn)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tc.(*tls.Conn); !ok {
		t.Fatalf("StartTLS returned %T", tc)
	}
	readGreeting(t, tc, tlsGreeting)
}

func TestDialerFailures(t *testing.T) {
	// A listener that accepts but never speaks TLS.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveLoop(t, silent, func(c net.Conn) { io.Copy(io.Discard, c) })
	// A port with nothing listening.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	tests := []struct {
		name    string
		addr    string
		ctx     context.Context
		wantErr string
		wantIs  error
	}{
		{"connection refused", closedAddr, context.Background(), "check the network or the upstream in the config", nil},
		{"handshake timeout", silent.Addr().String(), context.Background(), "tls handshake with", context.DeadlineExceeded},
		{"cancelled", silent.Addr().String(), cancelled, "connecting to", context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := NewDialer(tt.addr, TLSImplicit, "")
			if err != nil {
				t.Fatal(err)
			}
			d.HandshakeTimeout = 100 * time.Millisecond
			conn, err := d.Dial(tt.ctx)
			if err == nil {
				conn.Close()
				t.Fatal("Dial succeeded")
			}
			t.Logf("error: %v", err)
			if !errors.Is(err, ErrUpstreamUnavailable) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v; want ErrUpstreamUnavailable and %q", err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error = %v; want it to wrap %v", err, tt.wantIs)
			}
		})
	}
}

func TestNewDialer(t *testing.T) {
	ca := testkit.NewCA(t)
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello\n"), 0o644)
	tests := []struct {
		name     string
		addr     string
		mode     TLSMode
		caFile   string
		wantMode TLSMode
		wantErr  string
	}{
		{"imaps default", "outlook.office365.com:993", "", "", TLSImplicit, ""},
		{"submission default", "smtp.office365.com:587", "", "", TLSStartTLS, ""},
		{"explicit implicit on 587", "smtp.example.com:587", TLSImplicit, "", TLSImplicit, ""},
		{"with ca file", "localhost:993", TLSImplicit, ca.WriteCAFile(t), TLSImplicit, ""},
		{"no port", "outlook.office365.com", "", "", "", "want host:port"},
		{"no host", ":993", "", "", "", "want host:port"},
		{"bad mode", "imap.example.com:993", "none", "", "", "want implicit or starttls"},
		{"missing ca file", "imap.example.com:993", "", filepath.Join(dir, "missing.pem"), "", "reading ca_file"},
		{"ca file without certificates", "imap.example.com:993", "", notPEM, "", "no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := NewDialer(tt.addr, tt.mode, tt.caFile)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			host, _, _ := net.SplitHostPort(tt.addr)
			if d.Mode != tt.wantMode || d.TLS.ServerName != host || d.TLS.MinVersion != tls.VersionTLS12 ||
				d.TLS.InsecureSkipVerify || d.TLS.ClientSessionCache == nil ||
				d.DialTimeout != DefaultDialTimeout || d.HandshakeTimeout != DefaultHandshakeTimeout {
				t.Errorf("dialer = %+v (tls %+v)", d, d.TLS)
			}
		})
	}
}

func TestDialersReuse(t *testing.T) {
	var ds Dialers
	a, err := ds.Get("imap.example.com:993", TLSImplicit, "")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ds.Get("imap.example.com:993", TLSImplicit, "")
	c, _ := ds.Get("pop.example.com:995", TLSImplicit, "")
	if a != b || a == c {
		t.Errorf("Get: same upstream gave a different dialer or another upstream the same")
	}
	if _, err := ds.Get("no-port", "", ""); err == nil {
		t.Error("Get accepted an address without a port")
	}
}
