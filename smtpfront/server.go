package smtpfront

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/proxy"
)

// Defaults of Options and fixed bounds.
const (
	// DefaultPreAuthTimeout bounds the dialogue before a successful AUTH.
	DefaultPreAuthTimeout = 60 * time.Second
	// DefaultIdleTimeout bounds one wait for client input (RFC 5321
	// §4.5.3.2.7: a server waits at least 5 minutes for the next command).
	DefaultIdleTimeout = 5 * time.Minute
	// DefaultMaxUpstreamPerIdentity is Exchange Online's limit of concurrent
	// SMTP submissions per mailbox.
	DefaultMaxUpstreamPerIdentity = 3
	// DefaultUpstreamWait bounds the wait of a session for a free upstream
	// session of its identity.
	DefaultUpstreamWait = 30 * time.Second
	// DefaultMaxMessageBytes is the SIZE limit until an upstream's is known
	// (Gmail's is 35882577, Exchange Online's default 36 MiB).
	DefaultMaxMessageBytes = 35 << 20
	// DefaultDomain names the front in its greeting and its upstream EHLO.
	DefaultDomain = "localhost"

	// maxLineLength bounds a command line and a DATA line (RFC 5321
	// §4.5.3.1.6 allows 1000 octets; twice that as go-smtp does).
	maxLineLength = 2000
	// maxRecipients bounds the RCPTs of one message (Exchange Online's
	// maximum is 1000), so a client cannot grow the recipient list forever.
	maxRecipients = 1000
	// writeTimeout bounds writing one reply to the client.
	writeTimeout = time.Minute
	// maxAuthFailures is the number of failed AUTH commands after which the
	// connection is closed.
	maxAuthFailures = 3
	// maxProfiles bounds the go-smtp servers kept for EHLO profiles; beyond
	// it new connections get the conservative profile.
	maxProfiles = 8
)

// Options configure a Server. Zero values take the defaults above.
type Options struct {
	// Gateway maps a local login to an account, a token and an upstream dialer.
	Gateway *proxy.Gateway
	// PreAuthTimeout bounds the whole dialogue before a successful AUTH.
	PreAuthTimeout time.Duration
	// IdleTimeout bounds each wait for client input, before and after AUTH
	// (SMTP has no IDLE: this is the per-command timeout).
	IdleTimeout time.Duration
	// Domain is the host name in the greeting and in the upstream EHLO.
	Domain string
	// MaxUpstreamPerIdentity bounds concurrent upstream sessions per
	// identity; further client sessions wait up to UpstreamWait at AUTH.
	MaxUpstreamPerIdentity int
	// UpstreamWait bounds that wait; then the client gets 421 4.3.2.
	UpstreamWait time.Duration
	// Limits counts the upstream sessions per identity, shared with the
	// other SMTP listeners that get the same one (nil: this front's own).
	Limits *proxy.IdentityLimits
	// AllowInsecureAuth offers AUTH without TLS. Set it only for a listener
	// on a loopback address (the password then never crosses a network) or
	// where allow_plaintext is configured.
	AllowInsecureAuth bool
	// TLS, when set, offers STARTTLS (RFC 3207), or with ImplicitTLS starts
	// every connection with a TLS handshake (SMTPS, port 465 style, RFC
	// 8314). AUTH is offered over TLS whatever AllowInsecureAuth says.
	TLS *tls.Config
	// ImplicitTLS: TLS from the first byte; TLS must be set.
	ImplicitTLS bool
	// Upstreams, when set, returns the dialers of the upstreams this
	// listener relays to; the front probes their EHLO extensions at start
	// (probe.go), so that the first session already offers SMTPUTF8 and
	// the upstream's SIZE.
	Upstreams func() []*proxy.Dialer
	// MaxMessageBytes is the largest message accepted; the advertised SIZE
	// is the smaller of it and the upstream's limit once that is known.
	MaxMessageBytes int64
	// NoAuth, when set, lets clients it admits send without AUTH
	// (noauth.go); nil: MAIL before AUTH gets "530 5.7.0".
	NoAuth NoAuthFunc
	// Pacer keeps each identity within its sending limit; share one among
	// every SMTP listener (nil: one of this listener's own).
	Pacer *Pacer
	// SendRate gives an account's sending limit (nil: none, only the
	// back-off after the upstream's rate-limit replies).
	SendRate SendRateFunc
	// Log receives the server's own events (not per-connection ones); nil
	// means slog.Default().
	Log *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.PreAuthTimeout <= 0 {
		o.PreAuthTimeout = DefaultPreAuthTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.Domain == "" {
		o.Domain = DefaultDomain
	}
	if o.MaxUpstreamPerIdentity <= 0 {
		o.MaxUpstreamPerIdentity = DefaultMaxUpstreamPerIdentity
	}
	if o.UpstreamWait <= 0 {
		o.UpstreamWait = DefaultUpstreamWait
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Pacer == nil {
		o.Pacer = NewPacer(PacerOptions{})
	}
	return o
}

// Server is the SMTP front of one listener. It implements proxy.Handler:
// proxy.Server accepts each connection and calls ServeConn, which hands it
// to a long-lived go-smtp server (one per EHLO profile) through an in-memory
// listener and returns when go-smtp has closed it.
type Server struct {
	opts  Options
	slots *proxy.IdentityLimits // upstream sessions per identity (key "smtp")
	pacer *Pacer                // opts.Pacer
	exts  *extCache             // upstream EHLO extensions, for the front's EHLO
	probe probeState

	// connect opens a logged-in upstream session for acct; it is
	// proxy.Connect with loginUpstream.
	connect func(ctx context.Context, acct proxy.Account) (*upstream, error)
	// maxRcpts is go-smtp's limit of recipients per message and
	// maxPipelined that of the RCPTs sent upstream with a MAIL (pipeline.go);
	// both maxRecipients, except in tests.
	maxRcpts, maxPipelined int

	mu       sync.Mutex
	closed   bool                           // set by Close
	profiles map[ehloProfile]*profileServer // created on first use
}

// profileServer is a go-smtp server serving the connections handed to its
// listener, with one EHLO profile.
type profileServer struct {
	srv *smtp.Server
	ln  *chanListener
}

// New returns a Server; its go-smtp servers start with the first connection.
func New(opts Options) *Server {
	s := &Server{
		opts:     opts.withDefaults(),
		exts:     newExtCache(),
		profiles: make(map[ehloProfile]*profileServer),

		maxRcpts:     maxRecipients,
		maxPipelined: maxRecipients,
	}
	if s.slots = s.opts.Limits; s.slots == nil {
		s.slots = &proxy.IdentityLimits{}
	}
	s.startProbes()
	s.pacer = s.opts.Pacer
	s.connect = func(ctx context.Context, acct proxy.Account) (*upstream, error) {
		return proxy.Connect(ctx, s.opts.Gateway, acct, s.loginUpstream)
	}
	return s
}

// ServeConn runs one client session and returns when it has ended.
func (s *Server) ServeConn(ctx context.Context, c *proxy.Conn) {
	cc, ok := s.clientConn(ctx, c)
	if !ok {
		return
	}
	stop := context.AfterFunc(ctx, cc.cancel)
	defer stop()
	stopDrain := c.OnDrain(cc.drained)
	defer stopDrain()
	// A reload that removes the account or changes its password ends the
	// session politely at its next command.
	proxy.OnSessionClose(ctx, cc.sessionClosed)
	s.awaitProbes(ctx)
	ps, err := s.profileServer(cc.implicitTLS)
	if err != nil {
		writeReply(cc.Conn, replyShuttingDown)
		return
	}
	if !ps.ln.hand(ctx, cc) {
		if ctx.Err() == nil {
			writeReply(cc.Conn, replyShuttingDown)
		}
		return
	}
	<-cc.done
}

// Refuse answers a connection over the listener's limit.
// With implicit TLS nothing is written: a refusal is not worth a handshake
// under load, and plaintext would only be garbage to the client.
func (s *Server) Refuse(c net.Conn) {
	if !s.opts.ImplicitTLS {
		writeReply(c, replyBusy)
	}
}

// writeReply writes one reply straight to c, bounded by writeTimeout.
func writeReply(c net.Conn, e *smtp.SMTPError) {
	c.SetWriteDeadline(time.Now().Add(writeTimeout))
	io.WriteString(c, replyLine(e))
}

// Close stops the go-smtp servers from taking new connections (ServeConn
// then answers 421 at once). Sessions already running are ended by their
// contexts. Close is for after the proxy.Server has stopped.
func (s *Server) Close() error {
	s.probe.cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, ps := range s.profiles {
		ps.ln.Close()
	}
	return nil
}

var errClosed = errors.New("smtp front closed")

// profileServer returns the go-smtp server for the EHLO profile in force,
// starting it on first use. secure: the connection is under the front's
// implicit TLS.
func (s *Server) profileServer(secure bool) (*profileServer, error) {
	p := s.exts.profile(s.opts.MaxMessageBytes)
	p.secure = secure
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed
	}
	if ps, ok := s.profiles[p]; ok {
		return ps, nil
	}
	if len(s.profiles) >= maxProfiles {
		p = ehloProfile{size: s.opts.MaxMessageBytes, secure: secure}
		if ps, ok := s.profiles[p]; ok {
			return ps, nil
		}
	}
	ps := &profileServer{srv: s.newProfileServer(p), ln: newChanListener()}
	s.profiles[p] = ps
	go ps.srv.Serve(ps.ln) // returns when ln is closed
	return ps, nil
}

// newProfileServer configures a go-smtp server for profile p.
func (s *Server) newProfileServer(p ehloProfile) *smtp.Server {
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = s.opts.Domain
	srv.MaxMessageBytes = p.size
	srv.EnableSMTPUTF8 = p.smtputf8
	srv.MaxLineLength = maxLineLength
	srv.MaxRecipients = s.maxRcpts
	if p.secure {
		// TLS is the front's, under the connection go-smtp reads: AUTH is
		// safe, STARTTLS has nothing left to do.
		srv.AllowInsecureAuth = true
	} else {
		srv.AllowInsecureAuth = s.opts.AllowInsecureAuth
		srv.TLSConfig = s.startTLSConfig()
	}
	srv.WriteTimeout = writeTimeout
	srv.ReadTimeout = 0 // clientConn owns the read deadlines
	srv.ErrorLog = errorLog{s.opts.Log}
	return srv
}

// newSession is go-smtp's Backend: it runs at the client's first EHLO/HELO.
func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	cc, ok := clientConnOf(c.Conn())
	if !ok {
		s.opts.Log.Error("smtp session on an unknown connection type", "type", fmt.Sprintf("%T", c.Conn()))
		return nil, replyInternal
	}
	if cc.draining() {
		cc.hangUp("")
		return nil, replyShuttingDown
	}
	sess := newSession(s, cc)
	sess.maxBytes = c.Server().MaxMessageBytes
	return sess, nil
}

// errorLog passes go-smtp's internal messages to slog: recovered panics at
// ERROR, anything else (mostly clients that hung up) at DEBUG.
type errorLog struct{ log *slog.Logger }

func (l errorLog) Printf(format string, v ...any) { l.print(fmt.Sprintf(format, v...)) }
func (l errorLog) Println(v ...any)               { l.print(strings.TrimSuffix(fmt.Sprintln(v...), "\n")) }

func (l errorLog) print(msg string) {
	if strings.HasPrefix(msg, "panic") {
		l.log.Error("smtp server recovered a panic", "msg", msg)
		return
	}
	l.log.Debug("smtp server", "msg", msg)
}

// chanListener is a net.Listener whose connections are handed in by
// ServeConn rather than accepted from a socket.
type chanListener struct {
	ch        chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), closed: make(chan struct{})}
}

// hand gives c to the go-smtp server; false if the listener is closed or
// ctx ended first.
func (l *chanListener) hand(ctx context.Context, c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.closed:
		return false
	case <-ctx.Done():
		return false
	}
}

// Accept implements net.Listener.
func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (l *chanListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

// Addr implements net.Listener.
func (l *chanListener) Addr() net.Addr { return handoffAddr{} }

type handoffAddr struct{}

func (handoffAddr) Network() string { return "handoff" }
func (handoffAddr) String() string  { return "smtpfront" }
