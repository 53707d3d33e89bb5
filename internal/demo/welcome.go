package demo

import (
	"crypto/rand"
	"fmt"
	"strings"
	"time"
)

// welcomeText is the body of the message the demo INBOX starts with.
const welcomeText = `You are reading this through xoauthd.

Your mail client logged in to xoauthd on localhost with the user name
"demo" and the password "demo". xoauthd checked that password against
the argon2id hash in its configuration, looked up the OAuth identity
demo@contoso.test, took an access token for it from its encrypted token
store (refreshing it when needed), and logged in to the mail server with
SASL XOAUTH2. Since then it only relays bytes.

The identity provider and the mail server are built into the demo and
behave like the Microsoft identity platform and Exchange Online. With
Microsoft 365 the mail client's side stays exactly the same.

Try sending yourself a message through the SMTP port: it arrives here.
`

// welcomeMessage returns the welcome message with CRLF line ends.
func welcomeMessage(now time.Time) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: xoauthd demo <welcome@contoso.test>\r\n")
	fmt.Fprintf(&b, "To: %s\r\n", Identity)
	fmt.Fprintf(&b, "Subject: Welcome to the xoauthd demo\r\n")
	fmt.Fprintf(&b, "Date: %s\r\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s@contoso.test>\r\n", rand.Text())
	fmt.Fprintf(&b, "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	b.WriteString(strings.ReplaceAll(welcomeText, "\n", "\r\n"))
	return []byte(b.String())
}
