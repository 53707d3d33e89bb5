// Package check is the mailbox test of the vendor guides: for each account it
// runs the steps config, token, imap, pop3 and smtp against the real
// upstreams and explains every failure with its cause and fix (from package
// diagnose).
//
// It is one implementation with two faces: "xoauthd check" on the command
// line and the Test button of the browser console. Both build a Checker from
// the configuration snapshot and the token manager, call CheckAccount (with a
// progress callback that sees each step as it ends) or Check, and print or
// serve the Report; WriteText and WriteJSON are the command line's output,
// and the JSON is the same that the console offers for download.
//
// The mail steps log in upstream with the fronts' own logins
// (imapfront.LoginUpstream, pop3front.LoginUpstream,
// smtpfront.LoginUpstream): what check tests is what serve runs for every
// client, SASL-IR, the error challenge and IMAP's mailbox probe included.
// Only what follows the login is check's own: SELECT INBOX, STAT and the
// optional test message.
package check
