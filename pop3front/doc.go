// Package pop3front speaks the pre-authentication part of POP3 to a local
// client, logs in to the upstream with AUTH XOAUTH2 in the two-line form
// Exchange requires, and hands both connections to proxy's relay.
//
// It follows RFC 1939 (USER, PASS, QUIT in the AUTHORIZATION state), RFC 2449
// (CAPA, the 255-octet command limit with some headroom, response codes,
// PIPELINING), RFC 3206 ([AUTH] and [SYS/TEMP]) and RFC 5034 (AUTH with
// PLAIN and LOGIN, initial responses, "=" for an empty response, "*" to
// cancel). After login nothing is parsed: the relay pumps bytes, so TOP, UIDL
// and everything else the upstream offers reach the client unchanged.
//
// Replies to a login: "+OK Logged in." on success (a fixed text rather than
// the upstream's, which differs between servers); "-ERR [AUTH] Authentication
// failed." for wrong local credentials, a token that needs a new interactive
// login, or a token the upstream refused even after a refresh; "-ERR
// [SYS/TEMP] ..." when the identity provider or the upstream is down, and
// also when the login is throttled after repeated failures, so that the
// client retries later instead of asking its user for a new password. The
// cause and the fix go to the log, in one audit line per attempt.
//
// Deliberately not supported: APOP (the greeting carries no timestamp; a
// proxy cannot check a digest against an OAuth identity), SASL proxy
// authorization (an authorization identity other than the login), XOAUTH2
// from the local client, and local STLS, which comes with the local TLS
// support (see Options).
package pop3front
