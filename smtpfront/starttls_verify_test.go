package smtpfront

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"

	"github.com/xoauthd/xoauthd/proxy"
)

// TestUpstreamStartTLSCertificateRefused checks that a certificate refused
// during the upstream's STARTTLS handshake (which runs inside go-smtp's
// client) is logged with its cause and fix, as proxy.Dialer explains one
// refused during an implicit-TLS handshake, and that the client gets the
// temporary 454.
func TestUpstreamStartTLSCertificateRefused(t *testing.T) {
	tests := []struct {
		name string
		tls  func(roots *x509.CertPool) *tls.Config
		log  []string
	}{
		{"unknown CA", func(*x509.CertPool) *tls.Config {
			return &tls.Config{RootCAs: x509.NewCertPool(), ServerName: "localhost"}
		}, []string{"is not trusted", "set ca_file for a private CA"}},
		{"wrong name", func(roots *x509.CertPool) *tls.Config {
			return &tls.Config{RootCAs: roots, ServerName: "mail.contoso.test"}
		}, []string{"not valid for that name", "check the upstream host name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			up := h.front.opts.Gateway.Upstream
			h.front.opts.Gateway.Upstream = func(a proxy.Account) (*proxy.Dialer, error) {
				d, err := up(a)
				if err != nil {
					return nil, err
				}
				bad := *d
				bad.TLS = tt.tls(d.TLS.RootCAs)
				return &bad, nil
			}
			c := h.client()
			err := c.Auth(sasl.NewPlainClient("", testLogin, testPassword))
			if err == nil || !strings.Contains(err.Error(), "454") {
				t.Fatalf("AUTH with a refused upstream certificate = %v, want 454", err)
			}
			h.log.waitFor(t, append([]string{"result=error"}, tt.log...)...)
			h.up.mu.Lock()
			authed := len(h.up.users)
			h.up.mu.Unlock()
			if authed != 0 {
				t.Error("the token reached an upstream whose certificate was refused")
			}
		})
	}
}
