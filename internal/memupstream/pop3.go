package memupstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

// POP3 upstream limits.
const (
	// maxPOP3Line bounds a command line, CRLF included. RFC 2449 §4 allows
	// 255 octets; the headroom is for clients that exceed it a little.
	maxPOP3Line = 512
	// maxPOP3AuthLine bounds the line that carries a SASL response (RFC
	// 5034 §4 exempts it from the command limit): an XOAUTH2 response holds
	// a whole access token.
	maxPOP3AuthLine = 16 << 10
	// pop3IdleTimeout ends a silent session; RFC 1939 §3 asks for at least
	// ten minutes.
	pop3IdleTimeout = 10 * time.Minute
	// pop3WriteTimeout bounds writing one response.
	pop3WriteTimeout = time.Minute
	// maxPOP3Errors is how many bad commands end a session.
	maxPOP3Errors = 10
)

// POP3Options configure a POP3 upstream. The zero value is usable.
type POP3Options struct {
	// Addr is the listen address; empty means "127.0.0.1:0".
	Addr string
	// STARTTLS greets in plaintext and offers STLS (RFC 2595) instead of
	// implicit TLS.
	STARTTLS bool
}

// POP3 is a running POP3 upstream over the mailboxes of a Server: POP3
// (RFC 1939) over implicit TLS with the Server's certificate, CAPA and
// response codes (RFC 2449, RFC 3206), and SASL XOAUTH2 (RFC 5034 framing)
// checked by the Server's Options.Validate as its only login. The maildrop is
// the user's INBOX, which IMAP sessions share.
//
// It does not support USER/PASS, APOP, the faults of Server.SetFault (it
// has its own: SetFault) or LAST. Message sizes are the stored octets, which equal the transmitted
// ones for messages stored with CRLF line ends.
type POP3 struct {
	srv    *Server
	access *mailAccess
	ln     net.Listener
	tls    *tls.Config // for STLS; nil: implicit TLS
	log    *slog.Logger
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and every session

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	inUse  map[string]bool // users with a session in the TRANSACTION state
	closed bool

	fault     POP3Fault // for the next faultLeft connections (< 0: all)
	faultLeft int
	stats     POP3Stats
}

// StartPOP3 starts a POP3 upstream on s's users, mailboxes, certificate and
// token check.
func (s *Server) StartPOP3(opts POP3Options) (*POP3, error) {
	ln, err := listen(opts.Addr, "listening for pop3")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &POP3{
		srv:    s,
		access: newMailAccess(s),
		ln:     tls.NewListener(ln, s.ServerTLS()),
		log:    s.logger(),
		ctx:    ctx,
		cancel: cancel,
		conns:  make(map[net.Conn]struct{}),
		inUse:  make(map[string]bool),
	}
	if opts.STARTTLS {
		p.ln, p.tls = ln, s.ServerTLS()
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr returns the host:port the POP3 upstream listens on.
func (p *POP3) Addr() string { return p.ln.Addr().String() }

// Close stops accepting, ends every session without committing deletions
// and waits for them.
func (p *POP3) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.cancel()
	err := p.ln.Close()
	p.wg.Wait()
	p.access.close()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("closing the pop3 upstream: %w", err)
	}
	return nil
}

func (p *POP3) acceptLoop() {
	defer p.wg.Done()
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.log.Debug("pop3 accept failed", "component", "memupstream", "err", err)
			}
			return
		}
		if !p.track(conn) {
			_ = conn.Close()
			return
		}
		p.wg.Add(1)
		go p.serve(conn)
	}
}

// track records a live connection; false once Close has begun.
func (p *POP3) track(conn net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[conn] = struct{}{}
	return true
}

// serve runs one session and recovers its panics.
func (p *POP3) serve(conn net.Conn) {
	defer p.wg.Done()
	c := &pop3Conn{p: p, conn: conn, r: bufio.NewReaderSize(conn, maxPOP3AuthLine), w: bufio.NewWriter(conn),
		fault: p.accepted()}
	defer func() {
		if v := recover(); v != nil {
			p.log.Error("pop3 session panicked", "component", "memupstream", "panic", v, "stack", string(debug.Stack()))
		}
		c.end()
		p.mu.Lock()
		delete(p.conns, conn)
		p.mu.Unlock()
		_ = conn.Close()
	}()
	c.run()
}

// lock takes the maildrop lock of user (RFC 1939 §4); false when another
// session holds it.
func (p *POP3) lock(user string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := strings.ToLower(user)
	if p.inUse[key] {
		return false
	}
	p.inUse[key] = true
	return true
}

// unlock releases the maildrop lock of user.
func (p *POP3) unlock(user string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.inUse, strings.ToLower(user))
}
