// Package e2e holds the end-to-end tests: a real Dovecot upstream (IMAPS,
// POP3S, submission with STARTTLS) validating tokens from the test identity
// provider, xoauthd's daemon wired from a YAML configuration exactly as
// `xoauthd serve` wires it, and real clients in front (curl, go-imap's
// imapclient, go-smtp's client). The package has no code outside its tests.
package e2e
