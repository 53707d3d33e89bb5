package config

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"time"
)

// Warnings returns what is allowed but risky in a valid configuration, each
// with its YAML path and line, for `xoauthd validate` and the log at start:
// the store key kept in the token store's directory, a listener that
// accepts TLS 1.0 or 1.1, no_auth networks wide enough to let much of the
// internet send as an account (noauth.go), and client certificates that
// expire soon or have expired (clientcert.go). It reads the certificate
// files.
func (c *Config) Warnings() Problems {
	k := &checker{c: c, names: slices.Sorted(maps.Keys(c.Providers))}
	k.storeKeyWarning()
	k.legacyTLSWarnings()
	k.noAuthWarnings()
	k.certificateWarnings(time.Now())
	k.ps.sortByLine()
	return k.ps
}

// storeKeyWarning warns when the key file sits in the token store's data
// directory (/var/lib/xoauthd, a volume): one backup or volume of it then
// holds both. A store kept beside the configuration, the single-directory
// layout of the defaults, has no data directory of its own to warn about;
// nor has the redis backend, which keeps no token file.
func (k *checker) storeKeyWarning() {
	c := k.c
	s := c.Store
	if s.IsRedis() || s.KeyFile == "" || s.Path == "" || filepath.Dir(s.Path) == filepath.Dir(c.Path) {
		return
	}
	if filepath.Dir(s.KeyFile) == filepath.Dir(s.Path) {
		k.ps = append(k.ps, Problem{Path: storeKeyPath, Line: c.lines.line(storeKeyPath), Msg: fmt.Sprintf(
			"the key file %s is in the token store's directory: one backup or volume of it holds both, and with them "+
				"every mailbox; keep the key apart, beside the configuration (the default) or in a secret, with "+
				"store.key: ${file:PATH} (see SECURITY.md)", s.KeyFile)})
	}
}

// legacyTLSWarnings warns about every listener that accepts TLS 1.0 or 1.1.
func (k *checker) legacyTLSWarnings() {
	c := k.c
	for i := range c.Servers {
		s := &c.Servers[i]
		if !s.TLS.Legacy() {
			continue
		}
		path := fmt.Sprintf("servers[%d].tls.min_version", i)
		k.ps = append(k.ps, Problem{Path: path, Line: c.lines.line(path), Msg: fmt.Sprintf(
			"%s accepts TLS %s from mail clients, with CBC cipher suites: obsolete and weaker than TLS 1.2 "+
				"(BEAST, Lucky13; no forward secrecy with RSA key exchange). Keep it for clients that cannot do TLS 1.2, "+
				"on loopback or a trusted network", s.Listen, s.TLS.MinVersion)})
	}
}
