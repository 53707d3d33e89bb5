// Package imapfront speaks the pre-authentication part of IMAP4rev1 (RFC 3501)
// to a local client: greeting, CAPABILITY, NOOP, LOGOUT, ID (RFC 2971), LOGIN
// and AUTHENTICATE PLAIN (RFC 4616) and LOGIN with SASL-IR (RFC 4959), literals
// and LITERAL+ (RFC 7888). After a good local login it logs in to the upstream
// with AUTHENTICATE XOAUTH2 under the client's own tag, answers the client with
// the upstream's post-login capabilities and hands both connections to
// proxy.Relay, which carries the rest of the session as bytes.
//
// Every read before login is bounded: a fixed-size line reader (8 KiB), a
// literal size (4 KiB) and count, a pre-auth deadline, and a number of BAD
// replies and failed logins after which the session ends with BYE. An unknown
// first command ends the session at once.
//
// Upstream, the login sends a cheap LIST "" "" before the client is answered:
// Exchange Online accepts tokens for mailboxes it cannot open and says
// "BAD User is authenticated but not connected" only to the next command. That
// is reported to the client as NO [CONTACTADMIN] and logged with the fix.
//
// A failed login is answered by the class proxy.Classify gives it, with an
// RFC 5530 response code: [AUTHENTICATIONFAILED] for wrong local
// credentials, [CONTACTADMIN] when the password was right but an
// administrator must act (new sign-in, provider configuration, upstream
// refusal), [UNAVAILABLE] when something is down or the login is throttled
// (with the seconds to wait), [LIMIT] when the identity has as many upstream
// sessions as max_upstream_per_identity allows. A "* BYE ... AccessTokenExpired" during the login counts as a rejected
// token, so the token is refreshed and the login retried once.
//
// Local TLS (Options.TLS): STARTTLS (RFC 3501 §6.2.1) or implicit TLS from
// the first byte (port 993 style). Whatever a client sends behind STARTTLS
// before the handshake is discarded, never read as if it came over TLS
// (CVE-2011-0411). Unless Options.AllowPlaintextLogin is set, a listener
// with TLS announces LOGINDISABLED and no mechanisms before STARTTLS and
// refuses LOGIN and AUTHENTICATE with NO [PRIVACYREQUIRED] (RFC 5530)
// without checking the credentials; the daemon allows plaintext logins on
// loopback listeners, where the password does not leave the machine.
// Without local TLS, STARTTLS is answered BAD with the reason and the
// session goes on (clients such as fetchmail try it unannounced); any other
// unknown first command ends the session with BYE, since it is likely
// another protocol talking to the port.
//
// Not supported before login: other SASL mechanisms, ENABLE, COMPRESS, and
// any mailbox command (answered BAD; nothing is forwarded upstream before
// the local login succeeded).
package imapfront
