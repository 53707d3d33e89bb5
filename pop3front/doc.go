// Package pop3front speaks the pre-authentication part of POP3 (RFC 1939,
// RFC 2449 CAPA and response codes, RFC 5034 SASL) to a local client, logs in
// to the upstream with AUTH XOAUTH2 in the two-line form Exchange requires, and
// hands both connections to proxy's relay.
package pop3front
