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
// Local TLS (Options.TLS): STLS (RFC 2595 §4) or implicit TLS from the
// first byte (port 995 style). Whatever a client sends behind STLS before
// the handshake is discarded, never read as if it came over TLS
// (CVE-2011-0411). Unless Options.AllowPlaintextLogin is set, a listener
// with TLS lists STLS but not USER or SASL before TLS, and refuses USER,
// PASS and AUTH there without checking the credentials; the daemon allows
// plaintext logins on loopback listeners, where the password does not leave
// the machine.
//
// Deliberately not supported: APOP (the greeting carries no timestamp; a
// proxy cannot check a digest against an OAuth identity), SASL proxy
// authorization (an authorization identity other than the login), and
// XOAUTH2 from the local client.
package pop3front
