// Package smtpfront is the SMTP submission front (RFC 5321, RFC 6409): a
// go-smtp server for the local client whose sessions relay each MAIL, RCPT
// and DATA to a go-smtp client logged in upstream with SASL XOAUTH2. A
// message is acknowledged only after the upstream accepted it.
//
// Towards the client it speaks EHLO with PIPELINING (RFC 2920), 8BITMIME
// (RFC 6152), ENHANCEDSTATUSCODES (RFC 2034), SIZE (RFC 1870), SMTPUTF8
// (RFC 6531) when the upstream has it, CHUNKING (RFC 3030: BDAT is relayed
// as DATA) and AUTH PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login)
// per RFC 4954, offered only over TLS or when Options.AllowInsecureAuth is
// set for a loopback listener. With Options.TLS it offers STARTTLS (RFC
// 3207, go-smtp's, which drops whatever the client sent behind STARTTLS
// before the handshake) or serves implicit TLS (RFC 8314, port 465 style;
// the front's own handshake, under go-smtp). It does not offer DSN,
// BINARYMIME, REQUIRETLS, DELIVERBY, MT-PRIORITY, VRFY or EXPN.
//
// Towards the upstream it says EHLO, STARTTLS (or uses implicit TLS), EHLO
// and AUTH XOAUTH2 with user= the token's own identity: Exchange Online
// refuses a shared mailbox as SMTP user, and sending as one is MAIL FROM
// with Send As. The plaintext part up to the TLS handshake is the front's
// own (upstreamtls.go); go-smtp's client takes over on the TLS connection.
//
// Design decisions:
//
//   - One upstream session per client session, opened at AUTH and reused
//     for every message; RSET is passed on when a transaction is open; the
//     end of the client session (QUIT or close) QUITs upstream.
//
//   - Upstream sessions per identity are limited (Exchange allows 3
//     concurrent submissions per mailbox). The slot is taken at AUTH, after
//     the local password check, and held until the client session ends;
//     a session that finds none free waits up to Options.UpstreamWait and
//     then gets "421 4.3.2" and is closed. The slot is given back after the
//     upstream has closed the connection, so the upstream never counts more.
//
//   - A failed AUTH is answered by the class proxy.Classify gives it, with
//     RFC 3463 enhanced codes: 535 5.7.8 for wrong local credentials, 535
//     5.7.0 when the password was right but an administrator must act, 454
//     4.7.0 when something is down or the login is throttled, 421 4.3.2
//     when the identity's upstream sessions stayed in use.
//
//   - A listener may admit clients from listed networks without AUTH
//     (Options.NoAuth, noauth.go): their first MAIL starts the session as
//     AUTH would, as one configured account, audited as unauthenticated
//     with the network rule that admitted them. Anyone else gets 530.
//
//   - Each identity's messages are paced to the upstream's sending limit
//     (Pacer, pacing.go): MAIL waits for the identity's next departure, a
//     token bucket of one refilled at the rate and shared by every
//     listener, for at most a bound; a longer wait is "451 4.7.0" with
//     when to retry. The upstream's own rate-limit reply (Exchange's 554
//     5.2.0) is the one upstream reply not passed on as it is: the client
//     gets "451 4.7.0", since a 5xx would have it drop a message that
//     waiting would deliver, and the identity backs off.
//
//   - The upstream is dialled only after AUTH, but a client reads EHLO
//     before: its SIZE and SMTPUTF8 come from the upstream's EHLO, probed
//     at start without a login for every upstream in Options.Upstreams
//     (probe.go; a session arriving meanwhile waits a few seconds for it),
//     then from what each login sees. Until an upstream is known (no
//     probe, or it failed) the front advertises SIZE
//     Options.MaxMessageBytes and no SMTPUTF8.
//
//   - Upstream replies (code, enhanced code, text) reach the client
//     unchanged: every refusal, and the 250 that accepts a message (DATA
//     or BDAT LAST) with the upstream's queue id; the log adds their cause
//     and fix from package diagnose (why=...), as it does for failed
//     logins. The 250 to MAIL and RCPT is go-smtp's own (its server keeps
//     the transaction only on a nil error).
//     DATA streams through fixed buffers. A client whose data breaks off
//     never completes the upstream message: the upstream connection is
//     dropped instead.
//
//   - The message data does not go through go-smtp's byte-at-a-time DATA
//     reader and writer. A DATA message is taken from the client stream by
//     the bulk relay (datatap.go: go-smtp keeps the dialogue and reads the
//     end-of-data line itself), unstuffed and stuffed again in bulk
//     (package wire) and written onto the upstream connection under
//     go-smtp's client, whose DATA writer only ends it. The bytes the
//     upstream receives are those go-smtp alone would send; the tests hold
//     the codecs to go-smtp's and net/textproto's originals. An upstream
//     that fails at any point gives the client a 4xx ("451 4.4.2" or the
//     upstream's own reply), never a 250.
//
//   - Commands a client pipelines are pipelined upstream too, when the
//     upstream offers PIPELINING (pipeline.go). go-smtp's server passes
//     them to the session one at a time; clientConn hands go-smtp one line
//     per read, so the RCPTs and DATA the client sent behind a MAIL are in
//     view, and those go-smtp certainly parses as they stand go upstream in
//     the same write as the MAIL. go-smtp's client then only reads their
//     replies. Should go-smtp refuse one of them itself, the upstream
//     transaction is rebuilt with exactly what the client was told before
//     a message starts. Replies to pipelined MAIL, RCPT and RSET go to the
//     client together (RFC 2920 §3.2), and in starttls mode the TLS records
//     of one write leave together (recordBatcher).
//
//   - After an upstream failure the upstream session is dropped and the
//     next MAIL dials a new one with a fresh token (keeping the slot); an
//     idle upstream session that the upstream closed is replaced at MAIL
//     without the client noticing. After three failed redials in a row the
//     session ends with 421.
//
//   - A configuration reload that removes the account or changes its
//     password (proxy.Sessions.Close) ends the session with "421 4.7.0" at
//     its next command; a message being relayed is finished first and
//     acknowledged with the upstream's reply.
//
//   - The protocol trace (proxy.Server.Trace) shows the dialogue up to a
//     successful AUTH with the credentials hidden, never a message; with
//     STARTTLS it ends at the handshake, because go-smtp's TLS layer sits
//     above the traced connection (implicit TLS is traced in full, being
//     the front's own layer below it).
//
// proxy.Server accepts the connections; ServeConn hands each to a
// long-lived go-smtp server through an in-memory listener, and wraps it so
// that the front owns the read deadlines (pre-auth bound, idle bound,
// cancellation) and learns when go-smtp has closed it.
package smtpfront
