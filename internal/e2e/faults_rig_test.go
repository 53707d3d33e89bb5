package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/mail"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/internal/testkit"
)

// serveTLS accepts TLS connections with cert on a loopback port and, after
// the handshake (which a client refusing the certificate aborts), writes
// greeting; it closes each connection after a second. It is an upstream
// with a bad certificate: xoauthd must never get past its handshake.
func serveTLS(t *testing.T, cert tls.Certificate, greeting string) (addr string, handshakes *atomic.Int32) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	handshakes = new(atomic.Int32)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(time.Second))
				if c.(*tls.Conn).Handshake() == nil {
					handshakes.Add(1)
					io.WriteString(c, greeting)
					io.Copy(io.Discard, c)
				}
			}()
		}
	}()
	return ln.Addr().String(), handshakes
}

// cut is where a faultProxy breaks a session.
type cut int

const (
	cutNothing  cut = iota // relay faithfully
	cutGreeting            // send half the upstream's greeting, then close
	cutLogin               // close when xoauthd starts its upstream login
	cutTransfer            // close after cutAfter bytes of the reply to trigger
)

// faultProxy is a TLS-terminating proxy in front of one of Dovecot's
// implicit-TLS services: xoauthd connects to it (trusting its PKI's CA), it
// connects to Dovecot, relays the plain text in between, and breaks the
// session where it is told to.
type faultProxy struct {
	addr     string
	target   string
	upTLS    *tls.Config
	mu       sync.Mutex
	mode     cut
	trigger  string // cutTransfer: a client line containing this arms the cut
	cutAfter int    // cutTransfer: bytes of the reply relayed before the cut
	cuts     atomic.Int32
}

func newFaultProxy(t *testing.T, pki *testkit.PKI, target string, upTLS *tls.Config) *faultProxy {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", pki.ServerConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &faultProxy{addr: ln.Addr().String(), target: target, upTLS: upTLS}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

// set changes where the following sessions break.
func (p *faultProxy) set(mode cut, trigger string, cutAfter int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode, p.trigger, p.cutAfter = mode, trigger, cutAfter
}

func (p *faultProxy) serve(client net.Conn) {
	defer client.Close()
	p.mu.Lock()
	mode, trigger, cutAfter := p.mode, p.trigger, p.cutAfter
	p.mu.Unlock()
	up, err := tls.Dial("tcp", p.target, p.upTLS)
	if err != nil {
		return
	}
	defer up.Close()
	upBr := bufio.NewReader(up)
	greeting, err := upBr.ReadString('\n')
	if err != nil {
		return
	}
	if mode == cutGreeting {
		io.WriteString(client, greeting[:len(greeting)/2])
		p.cuts.Add(1)
		return
	}
	if _, err := io.WriteString(client, greeting); err != nil {
		return
	}
	var armed atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		// upstream → client, cut cutAfter bytes after the trigger.
		buf := make([]byte, 4096)
		sent := 0
		for {
			n, err := upBr.Read(buf)
			if n > 0 {
				chunk := buf[:n]
				if armed.Load() && mode == cutTransfer {
					if left := cutAfter - sent; left < n {
						client.Write(chunk[:max(left, 0)])
						p.cuts.Add(1)
						client.Close()
						up.Close()
						return
					}
					sent += n
				}
				if _, err := client.Write(chunk); err != nil {
					return
				}
			}
			if err != nil {
				client.Close()
				return
			}
		}
	}()
	br := bufio.NewReader(client)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			up.Close()
			break
		}
		upper := strings.ToUpper(line)
		if mode == cutLogin && (strings.Contains(upper, "AUTHENTICATE") || strings.HasPrefix(upper, "AUTH ")) {
			p.cuts.Add(1)
			up.Close()
			client.Close()
			break
		}
		if mode == cutTransfer && strings.Contains(upper, trigger) {
			armed.Store(true)
		}
		if _, err := io.WriteString(up, line); err != nil {
			break
		}
	}
	<-done
}

// smtpFaultUpstream is an SMTP submission server with STARTTLS and
// XOAUTH2 that breaks the connection during DATA at random: it is the
// upstream of the SMTP fault test, standing in for Exchange Online.
type smtpFaultUpstream struct {
	addr string

	mu        sync.Mutex
	rng       *mrand.Rand
	killProb  float64
	killAuth  bool            // break the connection at AUTH
	stored    map[string]bool // Message-IDs of messages kept (acknowledged or not)
	kills     int             // connections broken during DATA
	killsLate int             // of which after the message was kept, before the reply
}

func newSMTPFaultUpstream(t *testing.T, pki *testkit.PKI, seed uint64, killProb float64) *smtpFaultUpstream {
	t.Helper()
	u := &smtpFaultUpstream{rng: mrand.New(mrand.NewPCG(seed, 1)), killProb: killProb, stored: map[string]bool{}}
	s := smtp.NewServer(smtpBackendFunc(u.newSession))
	s.Domain = "upstream.contoso.test"
	s.TLSConfig = pki.ServerConfig(t)
	s.MaxMessageBytes = 50 << 20
	s.ReadTimeout, s.WriteTimeout = time.Minute, time.Minute
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.addr = ln.Addr().String()
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return u
}

// smtpBackendFunc adapts a function to smtp.Backend.
type smtpBackendFunc func(c *smtp.Conn) (smtp.Session, error)

func (f smtpBackendFunc) NewSession(c *smtp.Conn) (smtp.Session, error) { return f(c) }

func (u *smtpFaultUpstream) newSession(c *smtp.Conn) (smtp.Session, error) {
	return &faultSession{u: u, c: c}, nil
}

// faultSession is one upstream SMTP session.
type faultSession struct {
	u      *smtpFaultUpstream
	c      *smtp.Conn
	authed bool
}

func (s *faultSession) AuthMechanisms() []string { return []string{"XOAUTH2"} }

func (s *faultSession) Auth(mech string) (sasl.Server, error) {
	if mech != "XOAUTH2" {
		return nil, smtp.ErrAuthUnsupported
	}
	if _, ok := s.c.TLSConnectionState(); !ok {
		return nil, &smtp.SMTPError{Code: 538, EnhancedCode: smtp.EnhancedCode{5, 7, 11}, Message: "Encryption required"}
	}
	s.u.mu.Lock()
	killAuth := s.u.killAuth
	s.u.mu.Unlock()
	if killAuth {
		s.c.Conn().Close()
		return nil, errors.New("killed at AUTH")
	}
	return saslServerFunc(func(resp []byte) ([]byte, bool, error) {
		parts := strings.Split(string(resp), "\x01")
		if len(parts) != 4 || !strings.HasPrefix(parts[0], "user=") || !strings.HasPrefix(parts[1], "auth=Bearer ey") {
			return nil, true, &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication failed"}
		}
		s.authed = true
		return nil, true, nil
	}), nil
}

// saslServerFunc adapts a one-step function to sasl.Server.
type saslServerFunc func(resp []byte) ([]byte, bool, error)

func (f saslServerFunc) Next(resp []byte) ([]byte, bool, error) {
	if resp == nil {
		return []byte{}, false, nil
	}
	return f(resp)
}

func (s *faultSession) Mail(string, *smtp.MailOptions) error {
	if !s.authed {
		return smtp.ErrAuthRequired
	}
	return nil
}

func (s *faultSession) Rcpt(string, *smtp.RcptOptions) error { return nil }

// Data keeps the message, or breaks the connection at a random point of
// it: before its end (the message is lost, and must not be acknowledged),
// or after keeping it but before the reply (xoauthd cannot know; a retry
// makes a duplicate, never a loss).
func (s *faultSession) Data(r io.Reader) error {
	u := s.u
	u.mu.Lock()
	kill := u.rng.Float64() < u.killProb
	late := kill && u.rng.IntN(4) == 0
	at := u.rng.Int64N(64 << 10)
	u.mu.Unlock()
	var msg []byte
	var err error
	if kill && !late {
		msg, err = io.ReadAll(io.LimitReader(r, at))
		if err == nil {
			u.mu.Lock()
			u.kills++
			u.mu.Unlock()
			s.c.Conn().Close()
			return errors.New("killed during DATA")
		}
	} else {
		msg, err = io.ReadAll(r)
	}
	if err != nil {
		return err
	}
	id := messageID(msg)
	u.mu.Lock()
	u.stored[id] = true
	if late {
		u.kills++
		u.killsLate++
	}
	u.mu.Unlock()
	if late {
		s.c.Conn().Close()
		return errors.New("killed after DATA")
	}
	return nil
}

func (s *faultSession) Reset()        {}
func (s *faultSession) Logout() error { return nil }

// setKillAuth makes the upstream break every connection at AUTH.
func (u *smtpFaultUpstream) setKillAuth(on bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.killAuth = on
}

// serveHalfGreeting accepts connections and sends half an SMTP greeting
// before closing each: an upstream that breaks mid-greeting.
func serveHalfGreeting(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "220 upstream.contoso.te")
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// counts returns the kills so far and whether id was kept.
func (u *smtpFaultUpstream) counts() (kills, late int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.kills, u.killsLate
}

func (u *smtpFaultUpstream) has(id string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.stored[id]
}

// messageID returns the Message-ID of a message ("" when it has none).
func messageID(msg []byte) string {
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		return ""
	}
	return m.Header.Get("Message-ID")
}

// faultMessage is a message with a unique Message-ID and a body of size
// bytes of text lines.
func faultMessage(id string, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: fault %s\r\nMessage-ID: %s\r\n\r\n", alice, bob, id, id)
	line := strings.Repeat("0123456789", 7) + "\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	return b.Bytes()
}
