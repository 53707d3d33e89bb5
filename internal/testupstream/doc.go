// Package testupstream starts a real Dovecot (IMAPS, POP3S, submission with
// STARTTLS) on loopback ports in a temporary directory for tests, validating
// XOAUTH2 tokens from testidp, with an in-process SMTP sink that delivers
// submitted mail into the recipients' Maildirs.
package testupstream
