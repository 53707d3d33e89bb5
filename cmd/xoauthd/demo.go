package main

import (
	"context"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/demo"
)

// maxPort is the largest TCP port.
const maxPort = 65535

// runDemo runs the demo environment until SIGINT or SIGTERM: a built-in
// identity provider and mail server behind a real daemon, with the login
// demo / demo. It needs no configuration file; the instructions go to
// stdout, the log to stderr.
func runDemo(ctx context.Context, inv *invocation) int {
	fs := inv.flagSet("[--listen-host HOST] [--imap PORT] [--pop3 PORT] [--smtp PORT] [--console PORT]")
	host := fs.String("listen-host", demo.DefaultHost, "`HOST` (IP address) the IMAP, POP3 and SMTP listeners bind to")
	imapPort := fs.Int("imap", demo.DefaultIMAPPort, "IMAP `PORT` (a free one when taken; 0: any)")
	pop3Port := fs.Int("pop3", demo.DefaultPOP3Port, "POP3 `PORT` (a free one when taken; 0: any)")
	smtpPort := fs.Int("smtp", demo.DefaultSMTPPort, "SMTP `PORT` (a free one when taken; 0: any)")
	consolePort := fs.Int("console", demo.DefaultConsolePort, "`PORT` of the console and the admin endpoint (a free one when taken; 0: any)")
	level := fs.String("log-level", "info", "log `LEVEL` on stderr: debug, info, warn or error")
	if code, ok := inv.noArgs(fs); !ok {
		return code
	}
	for _, p := range []struct {
		flag string
		port int
	}{{"imap", *imapPort}, {"pop3", *pop3Port}, {"smtp", *smtpPort}, {"console", *consolePort}} {
		if p.port < 0 || p.port > maxPort {
			return inv.usageError(fs, "--%s %d is not a port (0 to %d)", p.flag, p.port, maxPort)
		}
	}
	if err := demo.CheckHost(*host); err != nil {
		return inv.usageError(fs, "--listen-host: %v", err)
	}
	log := newLogger(config.Log{Level: *level}, inv.stderr)
	err := demo.Run(ctx, demo.Options{
		Host:        *host,
		IMAPPort:    *imapPort,
		POP3Port:    *pop3Port,
		SMTPPort:    *smtpPort,
		ConsolePort: *consolePort,
		Log:         log,
	}, inv.stdout)
	if err != nil {
		return inv.fail(err)
	}
	return exitOK
}
