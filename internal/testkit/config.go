package testkit

import "fmt"

// ThreeListeners describes the configuration most end-to-end tests run: one
// test provider (Microsoft's protocol, authorization code flow, a test
// identity provider's authority), an IMAP, a POP3 and an SMTP (STARTTLS)
// listener in front of upstreams that trust CAFile, and one account.
type ThreeListeners struct {
	Store                       string // the store section's YAML, ending in a newline; "" for the defaults
	Tenant, ClientID, Authority string // the provider "test"
	CAFile                      string // the upstreams' CA
	IMAP, IMAPUpstream          string // listen address, upstream address
	POP3, POP3Upstream          string
	SMTP, SMTPUpstream          string
	Login, PasswordHash         string // the account's local login and its argon2id hash
	Identity                    string // the account's identity (and mailbox)
}

// YAML returns the configuration file's text.
func (c ThreeListeners) YAML() string {
	return fmt.Sprintf(`%sproviders:
  test: {type: microsoft, tenant: %s, client_id: %s, flow: authcode, authority: %q}
servers:
  - {protocol: imap, listen: %q, upstream: %q, ca_file: %q}
  - {protocol: pop3, listen: %q, upstream: %q, ca_file: %q}
  - {protocol: smtp, listen: %q, upstream: %q, upstream_tls: starttls, ca_file: %q}
accounts:
  - {login: %s, password_hash: %q, identity: %s, provider: test}
`, c.Store, c.Tenant, c.ClientID, c.Authority,
		c.IMAP, c.IMAPUpstream, c.CAFile,
		c.POP3, c.POP3Upstream, c.CAFile,
		c.SMTP, c.SMTPUpstream, c.CAFile,
		c.Login, c.PasswordHash, c.Identity)
}
