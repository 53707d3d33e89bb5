// Package memupstream is an in-process IMAP server that stands in for an
// OAuth mail provider in tests, benchmarks and the demo: IMAP4rev1 (RFC 3501)
// over implicit TLS with a certificate from an ephemeral CA it generates, and
// SASL XOAUTH2 as the only way to log in. The caller decides which tokens are
// good (Options.Validate); a rejected token gets the JSON error challenge and,
// after the client's empty response, a tagged NO, the way Google and Dovecot
// answer. Mailboxes live in memory (go-imap's imapmemserver).
//
// Faults reproduce what Exchange Online does to a client (see Fault): a
// login that succeeds but whose mailbox commands fail, a BYE for an expired
// token, and dropped connections.
//
// It does not support LOGIN, STARTTLS or any SASL mechanism but XOAUTH2.
//
// StartPOP3 and StartSMTP add a POP3 upstream and an SMTP submission
// upstream over the same users, mailboxes, certificate and token check (see
// POP3 and SMTP); each has its own listener and Close. The POP3 upstream
// can greet in plaintext and offer STLS (POP3Options.STARTTLS) and has
// faults of its own (POP3Fault), some of which strike before a login.
package memupstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// CAFileName is the name of the CA certificate file written into Options.Dir.
const CAFileName = "memupstream-ca.pem"

// defaultScope is the scope named in the error challenge (Dovecot's default).
const defaultScope = "mail"

// Options configure a Server. The zero value is usable.
type Options struct {
	// Validate decides whether token is good for user (the XOAUTH2 user=).
	// A non-nil error rejects the login with the JSON error challenge. Nil
	// accepts every non-empty token.
	Validate func(user, token string) error
	// Scope is named in the error challenge; empty means "mail".
	Scope string
	// Dir receives the CA certificate file (CAFileName). Empty: a new
	// temporary directory that Close removes.
	Dir string
	// Addr is the listen address; empty means "127.0.0.1:0".
	Addr string
	// Log receives the IMAP server's error messages at debug level; nil
	// discards them.
	Log *slog.Logger
}

// Fault is a misbehaviour of the server towards one user's logins.
type Fault int

// Faults a test can switch on with SetFault.
const (
	// FaultNone is normal behaviour.
	FaultNone Fault = iota
	// FaultNotConnected lets XOAUTH2 succeed, then answers every mailbox
	// command (LIST, SELECT, STATUS, ...) with "BAD User is authenticated but
	// not connected." as Exchange Online does when the token's user cannot
	// open the mailbox. CAPABILITY and NOOP still succeed.
	FaultNotConnected
	// FaultTokenExpired answers AUTHENTICATE with
	// "* BYE Session invalidated - AccessTokenExpired" and closes.
	FaultTokenExpired
	// FaultCloseOnLogin closes the connection when AUTHENTICATE arrives,
	// without any reply.
	FaultCloseOnLogin
	// FaultCloseAfterLogin lets XOAUTH2 succeed and closes the connection at
	// the first mailbox command.
	FaultCloseAfterLogin
)

// fault is a Fault and how many more logins it applies to (< 0: all).
type fault struct {
	f    Fault
	left int
}

// Server is a running in-memory IMAP upstream. Its methods are safe for
// concurrent use.
type Server struct {
	opts   Options
	pki    *pki
	caFile string // set by Start
	tmpDir string // removed by Close; empty when Options.Dir was given
	ln     net.Listener
	imap   *imapserver.Server
	served chan struct{} // closed when Serve has returned

	mu     sync.Mutex
	users  map[string]*imapmemserver.User
	faults map[string]fault
	closed bool
}

// Start generates the CA, writes the CA file and starts serving IMAPS on a
// loopback port.
func Start(opts Options) (*Server, error) {
	p, err := newPKI()
	if err != nil {
		return nil, fmt.Errorf("starting memupstream: %w", err)
	}
	s := &Server{
		opts:   opts,
		pki:    p,
		served: make(chan struct{}),
		users:  make(map[string]*imapmemserver.User),
		faults: make(map[string]fault),
	}
	dir := opts.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "memupstream-"); err != nil {
			return nil, fmt.Errorf("making a directory for the ca file: %w", err)
		}
		s.tmpDir = dir
	}
	s.caFile = filepath.Join(dir, CAFileName)
	if err := os.WriteFile(s.caFile, p.caPEM, 0o644); err != nil {
		s.removeTmp()
		return nil, fmt.Errorf("writing ca file: %w", err)
	}
	ln, err := listen(opts.Addr, "listening")
	if err != nil {
		s.removeTmp()
		return nil, err
	}
	s.ln = tls.NewListener(ln, &tls.Config{
		Certificates: []tls.Certificate{p.server},
		MinVersion:   tls.VersionTLS12,
	})
	s.imap = imapserver.New(&imapserver.Options{
		NewSession: s.newSession,
		Caps: imap.CapSet{
			imap.CapIMAP4rev1:   {},
			imap.CapNamespace:   {},
			imap.CapUIDPlus:     {},
			imap.CapMove:        {},
			imap.CapLiteralPlus: {},
		},
		Logger: printfLogger{log: s.logger()},
	})
	go func() {
		defer close(s.served)
		_ = s.imap.Serve(s.ln)
	}()
	return s, nil
}

func (s *Server) logger() *slog.Logger {
	if s.opts.Log != nil {
		return s.opts.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Addr returns the host:port the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// ServerName returns the name to verify the certificate against.
func (s *Server) ServerName() string { return ServerName }

// CAPEM returns the CA certificate in PEM form.
func (s *Server) CAPEM() []byte { return bytes.Clone(s.pki.caPEM) }

// CertPool returns a pool holding only the CA certificate.
func (s *Server) CertPool() *x509.CertPool { return s.pki.pool.Clone() }

// CAFile returns the path of the CA certificate file.
func (s *Server) CAFile() string { return s.caFile }

// ClientTLS returns a client TLS configuration that trusts the server.
func (s *Server) ClientTLS() *tls.Config {
	return &tls.Config{RootCAs: s.CertPool(), ServerName: ServerName, MinVersion: tls.VersionTLS12}
}

// AddUser adds a mailbox owner with an empty INBOX. Adding a user that
// exists already does nothing.
func (s *Server) AddUser(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[name]; ok {
		return
	}
	u := imapmemserver.NewUser(name, "")
	_ = u.Create("INBOX", nil) // a fresh user has no mailbox to collide with
	s.users[name] = u
}

// user returns the named user or nil.
func (s *Server) user(name string) *imapmemserver.User {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.users[name]
}

// Append stores msg in the user's mailbox (created when missing). Sessions
// that have the mailbox selected, IDLE ones included, see it arrive.
func (s *Server) Append(user, mailbox string, msg []byte) error {
	u := s.user(user)
	if u == nil {
		return fmt.Errorf("appending to %s: no user %q (hint: call AddUser first)", mailbox, user)
	}
	if _, err := u.Status(mailbox, &imap.StatusOptions{}); err != nil {
		if err := u.Create(mailbox, nil); err != nil {
			return fmt.Errorf("creating mailbox %s of %s: %w", mailbox, user, err)
		}
	}
	_, err := u.Append(mailbox, &literal{Reader: bytes.NewReader(msg)}, &imap.AppendOptions{Time: time.Now()})
	if err != nil {
		return fmt.Errorf("appending to %s of %s: %w", mailbox, user, err)
	}
	return nil
}

// literal is an imap.LiteralReader over a byte slice.
type literal struct{ *bytes.Reader }

// Size returns the literal's total length.
func (l *literal) Size() int64 { return l.Reader.Size() }

// SetFault makes the next n XOAUTH2 logins of user hit f; n < 0 means every
// login until SetFault(user, FaultNone, 0).
func (s *Server) SetFault(user string, f Fault, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f == FaultNone || n == 0 {
		delete(s.faults, user)
		return
	}
	s.faults[user] = fault{f: f, left: n}
}

// takeFault returns the fault for this login of user when it is one of
// wanted, and counts it as used.
func (s *Server) takeFault(user string, wanted ...Fault) Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	ft, ok := s.faults[user]
	if !ok {
		return FaultNone
	}
	for _, w := range wanted {
		if ft.f != w {
			continue
		}
		if ft.left > 0 {
			ft.left--
			if ft.left == 0 {
				delete(s.faults, user)
			} else {
				s.faults[user] = ft
			}
		}
		return ft.f
	}
	return FaultNone
}

// Close stops the server, ends every connection and removes the temporary
// directory it made.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	err := s.imap.Close()
	<-s.served
	s.removeTmp()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("closing memupstream: %w", err)
	}
	return nil
}

func (s *Server) removeTmp() {
	if s.tmpDir != "" {
		_ = os.RemoveAll(s.tmpDir)
	}
}

// printfLogger adapts slog to imapserver.Logger.
type printfLogger struct{ log *slog.Logger }

// Printf logs the message at debug level.
func (l printfLogger) Printf(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "component", "memupstream")
}

// ServerTLS returns a server TLS configuration with the server certificate,
// for tests that script an upstream of their own.
func (s *Server) ServerTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{s.pki.server}, MinVersion: tls.VersionTLS12}
}

// listen listens on addr, or on a free loopback port when addr is empty.
// An error starts with what ("listening for pop3") and names the address.
func listen(addr, what string) (net.Listener, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s on %s: %w", what, addr, err)
	}
	return ln, nil
}
