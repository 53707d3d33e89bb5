package smtpfront

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
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
	tc, err := proxy.ServerHandshake(log, c.Conn, s.opts.TLS)
	if !stop() && err == nil {
		err = ctx.Err()
		proxy.LogHandshakeFailure(log, err)
	}
	if err != nil {
		return nil, err
	}
	if err := c.Conn.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
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
			if cc.hs != nil {
				cc.hs.hello(hello)
			}
		}
		if inner != nil {
			return inner(hello)
		}
		return nil, nil
	}
	return cfg
}
