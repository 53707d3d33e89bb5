// Package demo is the environment of `xoauthd demo`: everything xoauthd
// needs to be tried in one command, without a tenant or a file to write.
//
// Start runs, all on loopback and inside the process:
//
//   - an identity provider that speaks the Microsoft identity platform v2.0
//     protocol (internal/testidp) with a public client and the user
//     demo@contoso.test, who consents automatically;
//   - a mail server for that user (internal/memupstream): IMAP and POP3 over
//     implicit TLS and SMTP submission with STARTTLS, certificates from an
//     ephemeral CA, SASL XOAUTH2 as the only login, and access tokens
//     checked the way Exchange Online checks them (signature, lifetime,
//     audience, owner, scope);
//   - the real xoauthd daemon (internal/daemon, as `xoauthd serve` runs it)
//     with a configuration written to a temporary directory: one provider,
//     the three servers and the account demo / demo;
//
// and signs the identity in through the real authorization code flow with
// PKCE (tokens.Login), the identity provider playing the browser. The INBOX
// starts with a welcome message. Close stops everything and removes the
// temporary directory (configuration, encrypted token store, CA file).
//
// Nothing in the fronts, the proxy or the token code knows about the demo:
// the daemon reads the written configuration like any other.
package demo
