// Package tlsroots builds the certificate pool that xoauthd verifies a
// server with: the system's roots plus the certificates of a configured
// CA file (an upstream's ca_file, store.redis.ca_file), for servers whose
// certificate comes from a private CA. Verification is never turned off.
package tlsroots
