package config

import (
	"maps"
	"slices"
	"time"
)

// Warnings returns what is allowed but risky in a valid configuration, each
// with its path and line: no_auth networks wide enough to let much of the
// internet send as an account (noauth.go), and client certificates that
// expire soon or have expired (clientcert.go). It reads the certificate
// files. validate prints the warnings; serve logs them.
func (c *Config) Warnings() Problems {
	k := &checker{c: c, names: slices.Sorted(maps.Keys(c.Providers))}
	k.noAuthWarnings()
	k.certificateWarnings(time.Now())
	k.ps.sortByLine()
	return k.ps
}
