// Package imapfront speaks the pre-authentication part of IMAP4rev1 (RFC 3501)
// to a local client: greeting, CAPABILITY, NOOP, LOGOUT, ID (RFC 2971), LOGIN
// and AUTHENTICATE PLAIN/LOGIN with SASL-IR (RFC 4959) and LITERAL+ (RFC 7888).
// After a good local login it logs in to the upstream with AUTHENTICATE XOAUTH2
// under the client's own tag and hands both connections to proxy's relay.
package imapfront
