package daemon

import (
	"crypto/tls"
	"fmt"
	"path/filepath"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/localtls"
)

// listenerTLS returns the local TLS of a listener (nil without tls:) and
// whether it is implicit. The certificate comes from tls.cert and tls.key,
// re-read when those files change (a renewed certificate needs no restart
// or reload), or is the self-signed one for tls.self_signed kept beside the
// token store (made on first start). The certificate's names, expiry and
// SHA-256 fingerprint are logged. tls.min_version sets the oldest TLS
// version accepted (below TLS 1.2 New logs config.Warnings' warning).
func (d *Daemon) listenerTLS(srv config.Server) (*tls.Config, bool, error) {
	t := srv.TLS
	if t == nil {
		return nil, false, nil
	}
	log := d.log.With("proto", srv.Protocol, "listen", srv.Listen)
	var (
		cert *localtls.Certificate
		err  error
	)
	if t.SelfSigned != "" {
		cert, err = localtls.SelfSigned(filepath.Dir(d.Config().Store.Path), t.SelfSigned, log)
	} else {
		cert, err = localtls.Load(t.Cert, t.Key, log)
	}
	if err != nil {
		return nil, false, fmt.Errorf("local TLS: %w", err)
	}
	return cert.ServerConfigMin(t.TLSVersion()), t.Mode == config.TLSImplicit, nil
}
