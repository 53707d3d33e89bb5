package demo

import (
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/xoauthd/xoauthd/config"
)

// microsoftText is the closing section of the instructions.
const microsoftText = `What Microsoft 365 needs instead
  1. An app registration in Microsoft Entra ID (App registrations > New
     registration): platform "Mobile and desktop applications" with the
     redirect URI http://localhost, "Allow public client flows" on, and the
     delegated permissions IMAP.AccessAsUser.All, POP.AccessAsUser.All and
     SMTP.Send of Office 365 Exchange Online plus offline_access (with admin
     consent where the tenant requires it).
  2. A configuration: start from config.example.yaml, put the tenant and the
     application (client) ID under providers, and add an account per legacy
     login with a password_hash from "xoauthd hash-password".
  3. IMAP, POP and SMTP AUTH allowed for the mailbox; SMTP AUTH is often off:
     Set-CASMailbox USER -SmtpClientAuthenticationDisabled $false
  4. "xoauthd login USER@YOUR-DOMAIN" once per identity (a browser sign-in;
     --device where there is no browser), then "xoauthd check".
  5. "xoauthd serve", and the legacy clients connect to it as they do here.
`

// WriteInstructions writes the login, the addresses, commands to try and
// what a Microsoft 365 setup needs instead.
func (e *Env) WriteInstructions(w io.Writer) error {
	imap, pop3, smtp := e.display(config.ProtoIMAP), e.display(config.ProtoPOP3), e.display(config.ProtoSMTP)
	var b strings.Builder
	b.WriteString("xoauthd demo is running.\n\n" +
		"A built-in identity provider and mail server stand in for Microsoft 365;\n" +
		"between them and your mail client runs the real xoauthd, as \"xoauthd serve\"\n" +
		"runs it. The identity " + Identity + " was signed in with the OAuth\n" +
		"authorization code flow, and its INBOX holds a welcome message.\n\n")
	fmt.Fprintf(&b, "  user name  %s\n  password   %s\n", Login, Password)
	fmt.Fprintf(&b, "  IMAP       %s   (no TLS)\n  POP3       %s   (no TLS)\n  SMTP       %s   (no TLS)\n\n", imap, pop3, smtp)
	fmt.Fprintf(&b, "The console, in a browser on this machine:\n\n  address    %s\n  password   %s\n\n"+
		"It lists the account; Connect signs %s in again through\nthe browser, and Test runs every step of \"xoauthd check\" and shows it.\n\n",
		e.ConsoleURL(), e.ConsolePassword(), Identity)
	notes := 0
	for _, l := range e.listeners {
		if l.Moved() {
			fmt.Fprintf(&b, "Port %d is in use, so %s listens on %s instead.\n", l.Wanted, strings.ToUpper(l.Protocol), e.display(l.Protocol))
			notes++
		}
	}
	if e.console.Moved() {
		fmt.Fprintf(&b, "Port %d is in use, so the console listens on %s instead.\n", e.console.Wanted, e.ConsoleURL())
		notes++
	}
	if !isLoopbackHost(e.host) {
		fmt.Fprintf(&b, "Warning: listening on %s, not loopback: whoever reaches this machine can\n"+
			"log in as %s/%s, and SMTP refuses AUTH without TLS there.\n", e.host, Login, Password)
		notes++
	}
	if notes > 0 {
		b.WriteString("\n")
	}
	b.WriteString("Try it with curl:\n\n")
	b.WriteString(commands(imap, pop3, smtp))
	b.WriteString("\nOr set up a mail client with these servers, user name and password\n" +
		"(connection security: none). The demo mail server delivers only to\n" +
		Identity + "; other recipients are refused with 550 5.1.1.\n\n")
	fmt.Fprintf(&b, "The configuration in use is %s;\nit and the encrypted token store are removed when the demo stops.\n\n", e.ConfigPath())
	b.WriteString(microsoftText)
	b.WriteString("\nPress Ctrl-C to stop the demo.\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// commands returns the curl commands for the given host:port addresses.
func commands(imap, pop3, smtp string) string {
	g := ""
	if strings.HasPrefix(imap, "[") {
		g = " -g" // curl reads [..] in a URL as a glob otherwise
	}
	return fmt.Sprintf(`  # the folders, the INBOX's message numbers, then the welcome message (UID 1)
  curl imap://%[1]s/ -u %[4]s:%[5]s%[7]s
  curl "imap://%[1]s/INBOX?ALL" -u %[4]s:%[5]s%[7]s
  curl "imap://%[1]s/INBOX;UID=1" -u %[4]s:%[5]s%[7]s

  # the same message over POP3
  curl pop3://%[2]s/1 -u %[4]s:%[5]s%[7]s

  # send yourself a message...
  printf 'From: %[6]s\r\nTo: %[6]s\r\nSubject: Hello through xoauthd\r\n\r\nIt works.\r\n' > message.txt
  curl smtp://%[3]s --mail-from %[6]s --mail-rcpt %[6]s -u %[4]s:%[5]s -T message.txt%[7]s
  # ...and read it back: it is UID 2 in IMAP, message 2 in POP3
  curl "imap://%[1]s/INBOX;UID=2" -u %[4]s:%[5]s%[7]s
  curl pop3://%[2]s/2 -u %[4]s:%[5]s%[7]s
`, imap, pop3, smtp, Login, Password, Identity, g)
}

// display returns the address a client on this machine connects to for
// protocol: the listen address, with 127.0.0.1 for an unspecified host.
func (e *Env) display(protocol string) string {
	host, port, err := net.SplitHostPort(e.Addr(protocol))
	if err != nil {
		return e.Addr(protocol)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// isLoopbackHost reports whether a listen host is loopback only.
func isLoopbackHost(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}
