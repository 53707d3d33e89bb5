// Package pop3front speaks the pre-authentication part of POP3 to a local
// client, logs in to the upstream with AUTH XOAUTH2 in the two-line form
// Exchange requires, and hands both connections to proxy's relay.
//
// It follows RFC 1939 (USER, PASS, QUIT in the AUTHORIZATION state), RFC 2449
// (CAPA, the 255-octet command limit with some headroom, response codes,
// PIPELINING, [IN-USE]), RFC 3206 ([AUTH], [SYS/TEMP], [SYS/PERM]) and RFC 5034 (AUTH with
// PLAIN and LOGIN, initial responses, "=" for an empty response, "*" to
// cancel). After login nothing is parsed: the relay pumps bytes, so TOP, UIDL
// and everything else the upstream offers reach the client unchanged.
//
// Replies to a login: "+OK Logged in." on success (a fixed text rather than
// the upstream's, which differs between servers). A failure is answered by
// the class proxy.Classify gives it: "-ERR [AUTH]" for wrong local
// credentials; "-ERR [SYS/PERM]" when the password was right but an
// administrator must act (a token that needs a new sign-in, a provider
// that refuses the configuration, an upstream that refuses even a fresh
// token); "-ERR [SYS/TEMP]" when the identity provider or the upstream is
// down, and when the login is throttled after repeated failures (with the
// seconds to wait), so that the client retries later instead of asking its
// user for a new password; "-ERR [IN-USE]" when the identity has as many
// upstream sessions as max_upstream_per_identity allows. The cause and the
// fix go to the log, in one audit line per attempt.
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
