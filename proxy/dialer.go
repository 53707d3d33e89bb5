package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/xoauthd/xoauthd/internal/tlsroots"
)

// TLSMode says how a connection to the upstream is secured.
type TLSMode string

// Upstream TLS modes. There is no plaintext mode: upstream TLS is always verified.
const (
	TLSImplicit TLSMode = "implicit" // TLS from the first byte (IMAPS 993, POP3S 995, SMTPS 465)
	TLSStartTLS TLSMode = "starttls" // plaintext greeting, then STARTTLS/STLS (SMTP 587)
)

// Defaults of a Dialer made by NewDialer.
const (
	DefaultDialTimeout      = 10 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	// sessionCacheSize is the number of TLS sessions kept per dialer for
	// resumption (one upstream host, so a few are plenty).
	sessionCacheSize = 64
)

// Dialer opens connections to one upstream server.
type Dialer struct {
	Addr             string        // host:port
	Mode             TLSMode       // implicit or starttls
	TLS              *tls.Config   // verified; ServerName set; shared session cache
	DialTimeout      time.Duration // TCP connect
	HandshakeTimeout time.Duration // TLS handshake
}

// NewDialer returns a Dialer for addr (host:port). mode "" picks starttls for
// port 587 or 25 and implicit TLS otherwise. The certificate is verified
// against the system roots plus the certificates in caFile (PEM) when it is
// set, for the host name of addr; there is no way to skip verification.
// Connections made by the same Dialer share a TLS session cache, so keep one
// Dialer per upstream and reuse it.
func NewDialer(addr string, mode TLSMode, caFile string) (*Dialer, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" {
		return nil, fmt.Errorf("parsing upstream address %q: want host:port (hint: e.g. outlook.office365.com:993)", addr)
	}
	switch mode {
	case "":
		mode = TLSImplicit
		if port == "587" || port == "25" {
			mode = TLSStartTLS
		}
	case TLSImplicit, TLSStartTLS:
	default:
		return nil, fmt.Errorf("upstream tls mode %q for %s: want implicit or starttls", mode, addr)
	}
	roots, err := tlsroots.WithFile(caFile)
	if err != nil {
		return nil, err
	}
	return &Dialer{
		Addr: addr,
		Mode: mode,
		TLS: &tls.Config{
			ServerName:         host,
			RootCAs:            roots,
			MinVersion:         tls.VersionTLS12,
			ClientSessionCache: tls.NewLRUClientSessionCache(sessionCacheSize),
		},
		DialTimeout:      DefaultDialTimeout,
		HandshakeTimeout: DefaultHandshakeTimeout,
	}, nil
}

// Dial connects to the upstream. In implicit mode it returns a TLS connection
// whose handshake (with certificate verification) has completed; in starttls
// mode it returns the plain TCP connection and the front calls StartTLS after
// its protocol's STARTTLS/STLS command.
func (d *Dialer) Dial(ctx context.Context) (net.Conn, error) {
	nd := net.Dialer{Timeout: d.DialTimeout}
	conn, err := nd.DialContext(ctx, "tcp", d.Addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w (%w: check the network or the upstream in the config)", d.Addr, err, ErrUpstreamUnavailable)
	}
	if d.Mode == TLSStartTLS {
		return conn, nil
	}
	return d.handshake(ctx, conn)
}

// StartTLS upgrades conn (after the protocol's STARTTLS exchange) with a
// verified handshake bounded by HandshakeTimeout and ctx.
func (d *Dialer) StartTLS(ctx context.Context, conn net.Conn) (net.Conn, error) {
	return d.handshake(ctx, conn)
}

// handshake runs a verified TLS client handshake on conn and closes conn
// when it fails.
func (d *Dialer) handshake(ctx context.Context, conn net.Conn) (net.Conn, error) {
	if d.HandshakeTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.HandshakeTimeout)
		defer cancel()
	}
	tc := tls.Client(conn, d.TLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		if errors.Is(err, context.DeadlineExceeded) && d.HandshakeTimeout > 0 {
			return nil, fmt.Errorf("tls handshake with %s: no answer within %s: %w (%w: check that the upstream speaks tls on this port, upstream_tls implicit or starttls)", d.Addr, d.HandshakeTimeout, err, ErrUpstreamUnavailable)
		}
		return nil, d.handshakeError(err)
	}
	return tc, nil
}

// HandshakeError explains err, the failure of a TLS handshake with d's
// upstream that the caller ran itself (SMTP's STARTTLS runs inside go-smtp's
// client), like a failed handshake of Dial or StartTLS: a certificate that
// was not accepted gets its cause and the fix. The result wraps err and
// ErrUpstreamUnavailable.
func (d *Dialer) HandshakeError(err error) error { return d.handshakeError(err) }

// handshakeError explains a failed handshake, plainly when the certificate
// was not accepted.
func (d *Dialer) handshakeError(err error) error {
	var verr *tls.CertificateVerificationError
	if !errors.As(err, &verr) {
		return fmt.Errorf("tls handshake with %s: %w (%w: check the network and that the upstream speaks tls on this port, upstream_tls implicit or starttls)", d.Addr, err, ErrUpstreamUnavailable)
	}
	var (
		hostErr    x509.HostnameError
		invalidErr x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &hostErr):
		return fmt.Errorf("the upstream certificate of %s is not valid for that name: %w (%w: check the upstream host name in the config)", d.Addr, err, ErrUpstreamUnavailable)
	case errors.As(err, &invalidErr) && invalidErr.Reason == x509.Expired:
		return fmt.Errorf("the upstream certificate of %s has expired or is not valid yet: %w (%w: check this machine's clock and the upstream's certificate)", d.Addr, err, ErrUpstreamUnavailable)
	default:
		return fmt.Errorf("the upstream certificate of %s is not trusted: %w (%w: set ca_file for a private CA)", d.Addr, err, ErrUpstreamUnavailable)
	}
}
