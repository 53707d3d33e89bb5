// Package wiretest holds the oracles of package wire's tests and of
// smtpfront's: go-smtp's DATA reader and net/textproto's DotWriter written
// byte at a time as they are, and the client streams (quirks included) that
// the bulk codecs must treat exactly as they do.
package wiretest
