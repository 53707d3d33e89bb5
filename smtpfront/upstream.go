package smtpfront

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/internal/xoauth2"
	"github.com/xoauthd/xoauthd/proxy"
)

// Bounds of the upstream session.
const (
	// loginTimeout bounds a whole login or redial: token, dial, greeting,
	// EHLO, STARTTLS, EHLO, AUTH (including one retry with a new token).
	loginTimeout = 90 * time.Second
	// upstreamCommandTimeout bounds one upstream reply (RFC 5321 §4.5.3.2
	// recommends 5 minutes for MAIL and RCPT).
	upstreamCommandTimeout = 5 * time.Minute
	// upstreamSubmissionTimeout bounds the reply to the end of DATA (RFC
	// 5321 §4.5.3.2.6: 10 minutes), plus some slack.
	upstreamSubmissionTimeout = 12 * time.Minute
	// upstreamWriteTimeout bounds one write to the upstream, so a stalled
	// upstream cannot hold a DATA transfer for ever.
	upstreamWriteTimeout = 2 * time.Minute
	// quitTimeout bounds QUIT and the wait for the upstream to close after
	// it, so the upstream has counted the session as gone before its slot
	// is handed to the next one.
	quitTimeout = 5 * time.Second
	// maxQuitDrain bounds what is read (and dropped) after QUIT.
	maxQuitDrain = 64 << 10
	// maxLoginRead bounds what the upstream may send from the greeting to
	// the end of the login (a few short replies), so that an endless reply
	// fails the login at once instead of being read until its timeout.
	maxLoginRead = 1 << 20
)

// errLoginTooLong is returned by reads past maxLoginRead during login.
var errLoginTooLong = fmt.Errorf("the upstream sent more than %d bytes during login: %w", maxLoginRead, proxy.ErrUpstreamUnavailable)

// upstream is one logged-in upstream SMTP session.
type upstream struct {
	c    *smtp.Client
	conn *upstreamConn // the connection under c, for abort and quit
	addr string
	ext  upstreamExt
	// pipelining: the upstream offers PIPELINING (RFC 2920), so commands
	// may be sent without waiting for each reply (pipeline.go).
	pipelining bool
}

// abort drops the connection at once: an unfinished DATA is not completed.
// It is safe to call from any goroutine.
func (u *upstream) abort() { u.conn.raw.Close() }

// quit ends the session politely and waits (bounded) for the upstream to
// close the connection.
func (u *upstream) quit() {
	u.conn.drainOnClose.Store(true)
	u.c.CommandTimeout = quitTimeout
	if err := u.c.Quit(); err != nil {
		u.c.Close()
	}
}

// loginUpstream is the proxy.LoginFunc of SMTP: the login of
// LoginUpstream, after which the upstream's extensions are remembered for
// the EHLO the front answers.
func (s *Server) loginUpstream(ctx context.Context, conn net.Conn, d *proxy.Dialer, acct proxy.Account, token string) (*upstream, error) {
	up, err := loginUpstream(ctx, conn, d, acct, token, s.opts.Domain)
	if err != nil {
		return nil, err
	}
	s.exts.learn(d.Addr, up.ext)
	return up, nil
}

// Upstream is a logged-in SMTP upstream session.
type Upstream struct {
	// Client is go-smtp's client on the session, authenticated; the
	// caller ends it with Quit or Close.
	Client *smtp.Client
	// Conn is the connection under the client after STARTTLS (TLS), or
	// the connection given to LoginUpstream in implicit mode.
	Conn net.Conn
}

// LoginOptions adjust LoginUpstream. The zero value is usable.
type LoginOptions struct {
	// Domain is the EHLO name; empty means DefaultDomain.
	Domain string
}

// LoginUpstream is the SMTP upstream login that serve runs for every
// client, and that "xoauthd check" and the benchmark run too: greeting,
// EHLO, STARTTLS (in starttls mode), EHLO, AUTH XOAUTH2 with user= the
// token's own identity (Exchange refuses a shared mailbox as SMTP user;
// sending as one is MAIL FROM:<shared> with Send As). An error wraps
// proxy.ErrUpstreamRejected when the upstream refused the token and
// proxy.ErrUpstreamUnavailable when it failed otherwise; it carries the
// upstream's reply (a *smtp.SMTPError) and the stage that failed
// (proxy.StageOf). conn is closed on any error.
func LoginUpstream(ctx context.Context, conn net.Conn, d *proxy.Dialer, acct proxy.Account, token string, opts LoginOptions) (*Upstream, error) {
	if opts.Domain == "" {
		opts.Domain = DefaultDomain
	}
	up, err := loginUpstream(ctx, conn, d, acct, token, opts.Domain)
	if err != nil {
		return nil, err
	}
	return &Upstream{Client: up.c, Conn: up.conn.Conn}, nil
}

// loginUpstream logs in on conn (see LoginUpstream). It closes conn on any
// error.
func loginUpstream(ctx context.Context, conn net.Conn, d *proxy.Dialer, acct proxy.Account, token, domain string) (*upstream, error) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	c, uc, err := helloUpstream(ctx, conn, d, domain)
	if err == nil {
		// The two-step form ("AUTH XOAUTH2", "334 ", response): a token on the
		// command line exceeds some servers' line limit (Dovecot's submission
		// answers 500 5.5.2), and Exchange accepts both forms.
		err = c.Auth(xoauth2.NewContinuationClient(acct.Identity, token))
		if err != nil {
			err = proxy.AtStage(proxy.StageLogin, authError(d.Addr, acct.Identity, err))
		}
	}
	if !stop() && err == nil {
		err = fmt.Errorf("logging in to %s: %w: %w", d.Addr, ctx.Err(), proxy.ErrUpstreamUnavailable)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	uc.inLogin = false
	c.CommandTimeout = upstreamCommandTimeout
	c.SubmissionTimeout = upstreamSubmissionTimeout
	ext := upstreamExtOf(c)
	return &upstream{c: c, conn: uc, addr: d.Addr, ext: ext, pipelining: hasExt(c, "PIPELINING")}, nil
}

// helloUpstream reads the greeting and says EHLO; in starttls mode it first
// runs the plaintext part (greeting, EHLO, STARTTLS, the verified
// handshake) itself, so that the session can write a message's data onto
// the TLS connection under go-smtp's client (wire.Encoder), and go-smtp's
// client starts on the TLS connection with the greeting replayed.
func helloUpstream(ctx context.Context, conn net.Conn, d *proxy.Dialer, domain string) (*smtp.Client, *upstreamConn, error) {
	uc := &upstreamConn{Conn: conn, raw: conn, inLogin: true, loginLeft: maxLoginRead}
	if d.Mode == proxy.TLSStartTLS {
		tc, batch, greeting, err := startTLS(ctx, conn, d, domain)
		if err != nil {
			return nil, nil, proxy.AtStage(proxy.StageStartTLS, err)
		}
		uc.Conn, uc.batch, uc.replay = tc, batch, greeting
	}
	c := smtp.NewClient(uc)
	c.CommandTimeout = loginStepTimeout(d)
	if err := c.Hello(domain); err != nil {
		c.Close()
		return nil, nil, proxy.AtStage(proxy.StageGreeting, fmt.Errorf("EHLO at %s: %w (%w: check the network, the upstream's certificate and upstream_tls)", d.Addr, err, proxy.ErrUpstreamUnavailable))
	}
	return c, uc, nil
}

// loginStepTimeout bounds one reply during login, the TLS handshake included.
func loginStepTimeout(d *proxy.Dialer) time.Duration {
	return max(30*time.Second, 2*d.HandshakeTimeout)
}

// authError classifies a failed AUTH XOAUTH2: a 535 or any 5.7.x reply, or
// a second error challenge, means the upstream refused the token
// (proxy.ErrUpstreamRejected, so Connect refreshes it once); anything else
// is a broken or busy upstream. The upstream's reply stays in the chain for
// the log.
func authError(addr, identity string, err error) error {
	var se *smtp.SMTPError
	var xe *xoauth2.Error
	switch {
	case errors.As(err, &se) && (se.Code == 535 || se.Code/100 == 5 && se.EnhancedCode[0] == 5 && se.EnhancedCode[1] == 7):
		return fmt.Errorf("upstream %s refused XOAUTH2 for %s: %w: %w", addr, identity, proxy.ErrUpstreamRejected, se)
	case errors.As(err, &xe):
		return fmt.Errorf("upstream %s refused XOAUTH2 for %s: %w: %w", addr, identity, proxy.ErrUpstreamRejected, xe)
	default:
		return fmt.Errorf("AUTH XOAUTH2 at %s: %w: %w", addr, proxy.ErrUpstreamUnavailable, err)
	}
}

func hasExt(c *smtp.Client, name string) bool {
	ok, _ := c.Extension(name)
	return ok
}

// upstreamConn is the upstream connection under the go-smtp client: every
// write has a deadline, and after QUIT, Close waits for the upstream to
// close its side first. In starttls mode it begins by replaying the
// greeting that startTLS read in plaintext.
type upstreamConn struct {
	net.Conn                    // plaintext or TLS: what go-smtp's client speaks SMTP over
	raw          net.Conn       // the TCP connection, closed by abort
	replay       []byte         // read before Conn
	batch        *recordBatcher // under Conn in starttls mode, else nil
	held         bool           // batch collects until the next Read (holdWrites)
	inLogin      bool           // reads are bounded by loginLeft (loginUpstream)
	loginLeft    int            // bytes the upstream may still send during login
	drainOnClose atomic.Bool

	// Commands pipelined ahead of go-smtp's client (pipeline.go), used under
	// the session's mu.
	behind []string // commands to write with the next MAIL command
	ahead  []string // commands that went upstream before the client wrote them, oldest first
}

func (c *upstreamConn) Read(b []byte) (int, error) {
	if err := c.releaseWrites(); err != nil {
		return 0, err
	}
	if len(c.replay) > 0 {
		n := copy(b, c.replay)
		c.replay = c.replay[n:]
		return n, nil
	}
	if !c.inLogin {
		return c.Conn.Read(b)
	}
	if c.loginLeft == 0 {
		return 0, errLoginTooLong
	}
	n, err := c.Conn.Read(b[:min(len(b), c.loginLeft)])
	c.loginLeft -= n
	return n, err
}

// Write is what go-smtp's client writes. The commands pipelined with a
// MAIL go out with it, and the client's own writes of them are dropped
// (pipeline.go).
func (c *upstreamConn) Write(b []byte) (int, error) {
	switch {
	case len(c.ahead) > 0:
		return c.dropAhead(b)
	case len(c.behind) > 0 && hasPrefixFoldASCII(b, mailPrefix):
		return c.writeMail(b)
	}
	return c.write(b)
}

func (c *upstreamConn) Close() error {
	c.releaseWrites()
	if c.drainOnClose.Load() {
		c.Conn.SetReadDeadline(time.Now().Add(quitTimeout))
		io.Copy(io.Discard, io.LimitReader(c.Conn, maxQuitDrain))
	}
	return c.Conn.Close()
}
