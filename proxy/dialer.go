package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"time"
)

// TLSMode says how a connection to the upstream is secured.
type TLSMode string

// Upstream TLS modes. There is no plaintext mode: upstream TLS is always verified.
const (
	TLSImplicit TLSMode = "implicit" // TLS from the first byte (IMAPS 993, POP3S 995, SMTPS 465)
	TLSStartTLS TLSMode = "starttls" // plaintext greeting, then STARTTLS/STLS (SMTP 587)
)

// Dialer opens connections to one upstream server.
type Dialer struct {
	Addr             string        // host:port
	Mode             TLSMode       // implicit or starttls
	TLS              *tls.Config   // verified; ServerName set; shared session cache
	DialTimeout      time.Duration // TCP connect
	HandshakeTimeout time.Duration // TLS handshake
}

// Dial connects to the upstream. In implicit mode it returns a TLS connection
// whose handshake (with certificate verification) has completed; in starttls
// mode it returns the plain TCP connection and the front calls StartTLS after
// its protocol's STARTTLS/STLS command.
func (d *Dialer) Dial(ctx context.Context) (net.Conn, error) {
	panic("filled in by the proxy issue")
}

// StartTLS upgrades conn (after the protocol's STARTTLS exchange) with a
// verified handshake bounded by HandshakeTimeout and ctx.
func (d *Dialer) StartTLS(ctx context.Context, conn net.Conn) (net.Conn, error) {
	panic("filled in by the proxy issue")
}
