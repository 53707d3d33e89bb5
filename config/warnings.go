package config

import (
	"fmt"
	"path/filepath"
)

// Warnings returns what is allowed but weakens security, each with its
// YAML path and line, for `xoauthd validate` and the log at start: the
// store key kept in the token store's directory, a listener that accepts
// TLS 1.0 or 1.1.
func (c *Config) Warnings() Problems {
	var ws Problems
	if s := c.Store; s.KeyFile != "" && s.Path != "" && filepath.Dir(s.KeyFile) == filepath.Dir(s.Path) {
		ws = append(ws, Problem{Path: storeKeyPath, Line: c.lines.line(storeKeyPath), Msg: fmt.Sprintf(
			"the key file %s is in the token store's directory: one backup or volume of it holds both, and with them "+
				"every mailbox; keep the key apart, beside the configuration (the default) or in a secret, with "+
				"store.key: ${file:PATH} (see SECURITY.md)", s.KeyFile)})
	}
	for i := range c.Servers {
		s := &c.Servers[i]
		if !s.TLS.Legacy() {
			continue
		}
		path := fmt.Sprintf("servers[%d].tls.min_version", i)
		ws = append(ws, Problem{Path: path, Line: c.lines.line(path), Msg: fmt.Sprintf(
			"%s accepts TLS %s from mail clients, with CBC cipher suites: obsolete and weaker than TLS 1.2 "+
				"(BEAST, Lucky13; no forward secrecy with RSA key exchange). Keep it for clients that cannot do TLS 1.2, "+
				"on loopback or a trusted network", s.Listen, s.TLS.MinVersion)})
	}
	return ws
}
