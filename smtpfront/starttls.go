package smtpfront

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/xoauthd/xoauthd/proxy"
)

// minPreAuthLeft is the least of the pre-auth time left to a client after
// the implicit TLS handshake, so that it can still say EHLO.
const minPreAuthLeft = time.Second

// errNoTLSConfig means ImplicitTLS was set without a TLS configuration (a
// wiring bug): no connection is served in plaintext instead.
var errNoTLSConfig = errors.New("smtp front has implicit TLS but no TLS configuration: no connection can be served")

// clientConn builds the connection go-smtp serves: the front's TLS for
// implicit TLS (its handshake within the pre-auth timeout), the protocol
// trace over it and the clientConn over both. ok is false when the
// handshake failed; the caller closes c.
func (s *Server) clientConn(ctx context.Context, c *proxy.Conn) (cc *clientConn, ok bool) {
	start := time.Now()
	var conn net.Conn = c.Conn
	if s.opts.ImplicitTLS {
		tc, err := s.handshake(ctx, c)
		if err != nil {
			return nil, false
		}
		conn = tc
	}
	red := &traceRedactor{}
	traced := c.Traced(conn, proxy.TracePeerClient, red)
	preAuth := max(s.opts.PreAuthTimeout-time.Since(start), minPreAuthLeft)
	cc = newClientConn(ctx, c, traced, s.opts.Log, s.opts.IdleTimeout, preAuth)
	cc.implicitTLS = s.opts.ImplicitTLS
	cc.stopTrace = func() { proxy.StopTrace(traced) }
	red.stop = cc.stopTrace
	return cc, true
}

// handshake runs the server side of the implicit TLS handshake on the
// accepted connection, bounded by the pre-auth timeout and ctx.
func (s *Server) handshake(ctx context.Context, c *proxy.Conn) (*tls.Conn, error) {
	log := c.Log
	if log == nil {
		log = s.opts.Log
	}
	if s.opts.TLS == nil {
		log.Error("closing connection", "err", errNoTLSConfig)
		return nil, errNoTLSConfig
	}
	if err := c.Conn.SetDeadline(time.Now().Add(s.opts.PreAuthTimeout)); err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { c.Conn.SetDeadline(time.Now()) })
	tc := tls.Server(c.Conn, s.opts.TLS)
	err := tc.Handshake()
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		logHandshakeFailure(log, err)
		return nil, err
	}
	if err := c.Conn.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	st := tc.ConnectionState()
	log.Debug("TLS started", "version", tls.VersionName(st.Version), "cipher", tls.CipherSuiteName(st.CipherSuite))
	return tc, nil
}

// startTLSConfig returns the TLS configuration go-smtp's STARTTLS uses
// (nil: STARTTLS is not offered). It notes on the connection that TLS
// began, so that nothing is written to it in plaintext any more, and ends
// the protocol trace, which would see only ciphertext from there on
// (go-smtp puts its TLS layer above the traced connection).
func (s *Server) startTLSConfig() *tls.Config {
	if s.opts.TLS == nil {
		return nil
	}
	cfg := s.opts.TLS.Clone()
	inner := cfg.GetConfigForClient
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if cc, ok := clientConnOf(hello.Conn); ok {
			cc.upgraded.Store(true)
			cc.stopTrace()
		}
		if inner != nil {
			return inner(hello)
		}
		return nil, nil
	}
	return cfg
}

// logHandshakeFailure logs a failed handshake: a client that hung up at
// DEBUG, anything else (a client that does not trust the certificate, or
// that speaks plaintext to the TLS port) at INFO.
func logHandshakeFailure(log *slog.Logger, err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.Is(err, context.Canceled) {
		log.Debug("TLS handshake with the client did not complete", "err", err)
		return
	}
	log.Info("TLS handshake with the client failed (does the client trust the certificate, and use TLS on this port?)", "err", err)
}
