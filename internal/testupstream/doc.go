// Package testupstream starts a real Dovecot 2.3 for tests and benchmarks:
// IMAPS and POP3S (implicit TLS) and submission (STARTTLS, RFC 3207) on free
// 127.0.0.1 ports, everything (config, sockets, logs, Maildirs) in one
// directory. Dovecot's passdb oauth2 validates HS256 JWT access tokens
// locally with the identity provider's signing key, taking the user name
// from the "email" claim, so SASL XOAUTH2 logins work like against
// Microsoft 365. Submission relays to an in-process SMTP Sink that delivers
// each message into its recipients' Maildirs, so a sent message can be
// fetched over IMAP.
//
// The certificate is issued for "localhost", 127.0.0.1 and ::1 by a CA
// generated at start (TLSConfig, CAFile). Mail is owned by uid/gid 65534,
// so the rig needs root; it does not support TLS client certificates,
// plaintext listeners or LMTP.
//
// Known Dovecot behaviour tests must allow for:
//   - Anvil's auth penalty: every login failure from one IP delays that IP's
//     next failure (measured with 2.3.19: about 0.5 s, 4.5 s, 8.5 s, then
//     15.5 s), even with auth_failure_delay = 0 and for trusted networks.
//     Tests that fail logins on purpose dial each from a distinct source
//     address (SourceIP, net.Dialer.LocalAddr) or allow 20 s timeouts.
//   - Submission prepends a Received: trace header to relayed mail; the
//     rest of the message reaches the Sink (and the recipient's Maildir)
//     byte for byte.
//   - An XOAUTH2 failure is a base64 JSON challenge ({"status":"401",
//     "schemes":"bearer","scope":"mail"}) that the client must answer with
//     an empty line; "=" gets BAD invalid base64 on IMAP.
//   - Submission-login refuses AUTH parameters over 1024 bytes ("500 5.5.2
//     Line too long"); an XOAUTH2 response with a realistic token must be
//     sent after an empty "334 " (RFC 4954 §4). IMAP accepts SASL-IR up to
//     about 8 KB and disconnects beyond.
//   - A DATA failure at the Sink (SetDataError) reaches the submission
//     client unchanged: code, enhanced code and text.
//   - A token whose email claim differs from the XOAUTH2 user= is refused.
//
// Start and Dovecot are free of the testing package so a benchmark program
// can use them; New wraps Start for tests.
package testupstream
