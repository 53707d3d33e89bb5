// Package smtpfront is the SMTP submission front (RFC 5321, RFC 4954 AUTH,
// RFC 6409): a go-smtp server for the local client whose sessions relay each
// MAIL, RCPT and DATA to a go-smtp client logged in upstream with XOAUTH2. A
// message is acknowledged only after the upstream accepted it.
package smtpfront
