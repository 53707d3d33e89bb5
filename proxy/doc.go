// Package proxy owns what every protocol front shares: listeners with connection
// ids and limits, the local credential check (argon2id, cached, throttled), the
// upstream dialer (implicit TLS or STARTTLS, always verified), the hand-off from
// a front's pre-auth dialogue to an upstream connection logged in with a fresh
// token (retrying once after a refresh), and the byte relay that carries an IMAP
// or POP3 session after login.
//
// proxy parses no mail protocol: the fronts (imapfront, pop3front, smtpfront) do,
// and hand it LoginFunc values that speak their protocol's XOAUTH2 exchange.
package proxy
