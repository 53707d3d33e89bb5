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
package check
