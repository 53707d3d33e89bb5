// Package testline is a raw client of the line protocols (IMAP, POP3, SMTP)
// for tests that must see exactly what a server sends, such as the goodbye
// of a session cut by a shutdown. Every wait is bounded.
package testline
