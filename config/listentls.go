package config

import (
	"crypto/tls"
	"net"
	"strings"
)

// The exposure policy of listeners and the checks of their tls: and
// allow_plaintext: keys.

// Bounds of a host name (RFC 1035 §2.3.4).
const (
	maxHostLen  = 253
	maxLabelLen = 63
)

// LoginNeedsTLS reports whether clients of this listener must turn TLS on
// before they log in: it listens on a non-loopback address (see
// IsLoopbackListen) and allow_plaintext is not set. Such a listener must
// have tls: (Validate says so); IMAP then announces LOGINDISABLED and POP3
// and SMTP offer no login before STARTTLS/STLS. On a loopback address
// logins are accepted with or without TLS: the password never leaves the
// machine.
func (s *Server) LoginNeedsTLS() bool {
	return !s.AllowPlaintext && !IsLoopbackListen(s.Listen)
}

// IsLoopbackListen reports whether a listen address (host:port) accepts
// connections from this machine only: its host is a loopback address
// (127.0.0.0/8, ::1) or "localhost". An empty host (every interface),
// 0.0.0.0, :: and every other address or name are not.
func IsLoopbackListen(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	return err == nil && isLoopback(host)
}

// listenerTLS checks the tls: and allow_plaintext: keys of one server.
func (k *checker) listenerTLS(at string, s *Server) {
	t := s.TLS
	if t == nil {
		if s.Listen != "" && checkAddr(s.Listen, false) == "" && s.LoginNeedsTLS() {
			k.addf(at+".listen", "%s is not a loopback address and this server has no tls:, so mail clients would send "+
				"passwords over the network in clear text; add tls: {cert: FILE, key: FILE} (or tls: {self_signed: HOST}), "+
				"listen on 127.0.0.1, or set allow_plaintext: true on this server if the network is trusted", quoteShort(s.Listen))
		}
		return
	}
	switch {
	case t.SelfSigned != "" && (t.Cert != "" || t.Key != ""):
		k.addf(at+".tls.self_signed", "set either self_signed or cert and key, not both")
	case t.SelfSigned != "":
		if !validHost(t.SelfSigned) {
			k.addf(at+".tls.self_signed", "%s is not a host name or IP address; write the name mail clients connect to, like mail.example.com", quoteShort(t.SelfSigned))
		}
	default:
		if t.Cert == "" {
			k.addf(at+".tls.cert", "missing; the PEM certificate (chain) for local TLS, or use self_signed: HOST instead of cert and key")
		}
		if t.Key == "" {
			k.addf(at+".tls.key", "missing; the PEM private key for local TLS")
		}
	}
	k.oneOf(at+".tls.mode", "TLS mode", t.Mode, tlsModes)
	k.tlsVersion(at, s)
}

// validHost reports whether h is an IP address or a DNS host name.
func validHost(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	if len(h) == 0 || len(h) > maxHostLen {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if len(label) == 0 || len(label) > maxLabelLen || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// tlsVersions maps the values of tls.min_version to crypto/tls versions, in
// the order messages list them.
var tlsVersions = []struct {
	name string
	v    uint16
}{{"1.0", tls.VersionTLS10}, {"1.1", tls.VersionTLS11}, {"1.2", tls.VersionTLS12}, {"1.3", tls.VersionTLS13}}

// TLSVersion returns the crypto/tls version of min_version (TLS 1.2 when
// it is empty or unknown, which Validate reports).
func (t *ListenerTLS) TLSVersion() uint16 {
	for _, tv := range tlsVersions {
		if tv.name == t.MinVersion {
			return tv.v
		}
	}
	return tls.VersionTLS12
}

// Legacy reports whether the listener accepts TLS 1.0 or 1.1.
func (t *ListenerTLS) Legacy() bool { return t != nil && t.TLSVersion() < tls.VersionTLS12 }

// tlsVersion checks tls.min_version and its acknowledgement off loopback.
func (k *checker) tlsVersion(at string, s *Server) {
	t := s.TLS
	names := make([]string, len(tlsVersions))
	known := false
	for i, tv := range tlsVersions {
		names[i] = tv.name
		known = known || tv.name == t.MinVersion
	}
	if !known {
		k.addf(at+".tls.min_version", "unknown TLS version %s; known: %s (write it quoted, like \"1.2\")",
			quoteShort(t.MinVersion), strings.Join(names, ", "))
		return
	}
	if t.Legacy() && !t.AllowLegacyOnNetwork && s.Listen != "" && !IsLoopbackListen(s.Listen) {
		k.addf(at+".tls.min_version", "TLS %s on %s, which is not a loopback address: obsolete TLS would cross the network; "+
			"listen on 127.0.0.1, or set allow_legacy_on_network: true under tls: if the network is trusted", t.MinVersion, quoteShort(s.Listen))
	}
}
