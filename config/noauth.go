package config

import (
	"fmt"
	"net/netip"
	"strings"
)

// NoAuth lets clients that cannot log in (scanners, monitoring, cron jobs,
// applications expecting a local MTA) send mail without SMTP AUTH on one
// listener. Such a client's session logs in upstream as Account's identity
// and mailbox; a client from anywhere else must AUTH as usual.
type NoAuth struct {
	// Account is the login of the account whose identity and mailbox the
	// mail is sent with.
	Account string `yaml:"account"`
	// From lists the client networks allowed to send without AUTH, as
	// CIDR prefixes (127.0.0.0/8, ::1/128) or single addresses. Required:
	// there is no default.
	From []string `yaml:"from"`
}

// Admits reports whether a client at addr may send without AUTH, and the
// entry of From that admitted it. IPv4 clients seen as IPv4-mapped IPv6
// addresses match IPv4 entries.
func (n *NoAuth) Admits(addr netip.Addr) (rule string, ok bool) {
	if n == nil || !addr.IsValid() {
		return "", false
	}
	addr = addr.Unmap()
	for _, f := range n.From {
		if p, err := parseNetwork(f); err == nil && p.Contains(addr) {
			return f, true
		}
	}
	return "", false
}

// parseNetwork parses one entry of no_auth.from: a prefix or an address.
func parseNetwork(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// localNetworks are address blocks that do not reach the internet; a
// no_auth network inside one of them is not worth a warning.
var localNetworks = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
}

// wideNetwork returns why p is too wide to let send without AUTH, or "".
// Public networks wider than a /24 (IPv4) or a /56 (IPv6) are.
func wideNetwork(p netip.Prefix) string {
	if p.Bits() == 0 {
		return "admits every address"
	}
	for _, l := range localNetworks {
		if l.Bits() <= p.Bits() && l.Contains(p.Addr()) {
			return ""
		}
	}
	if p.Addr().Is4() && p.Bits() < 24 || p.Addr().Is6() && p.Bits() < 56 {
		return "admits a wide range of public addresses"
	}
	return ""
}

// smtpOnly checks the settings of a server that only SMTP has: send_rate
// and no_auth.
func (k *checker) smtpOnly(at string, s *Server) {
	other := s.Protocol != ProtoSMTP && s.Protocol != ""
	if s.SendRate != nil && other {
		k.addf(at+".send_rate", "send_rate is for smtp servers only")
	}
	if s.NoAuth == nil {
		return
	}
	if other {
		k.addf(at+".no_auth", "no_auth is for smtp servers only; IMAP and POP3 clients always log in")
	}
	k.noAuth(at+".no_auth", s)
}

// noAuth checks a server's no_auth: a known account, and from given with
// valid networks. From is required on every listener, so that a no_auth on
// a non-loopback listener never admits more than was written.
func (k *checker) noAuth(at string, s *Server) {
	n := s.NoAuth
	switch {
	case n.Account == "":
		k.addf(at+".account", "missing; the login of the account whose identity and mailbox the mail is sent with")
	case k.c.Account(n.Account) == nil:
		k.addf(at+".account", "unknown account %s; name the login of an entry of accounts:", quoteShort(n.Account))
	}
	if len(n.From) == 0 {
		hint := "like from: [127.0.0.0/8, \"::1/128\"]"
		if s.Listen != "" && !IsLoopbackListen(s.Listen) {
			hint = fmt.Sprintf("%s listens beyond this machine: name exactly the networks of the devices that send, like from: [192.168.10.0/24]", quoteShort(s.Listen))
		}
		k.addf(at+".from", "missing; list the client networks allowed to send without AUTH, %s", hint)
	}
	for i, f := range n.From {
		if _, err := parseNetwork(f); err != nil {
			k.addf(fmt.Sprintf("%s.from[%d]", at, i), "%s is not a network or address; write it like 192.168.10.0/24, 127.0.0.1 or \"::1/128\"", quoteShort(f))
		}
	}
}

// noAuthWarnings warns about no_auth networks wide enough to let much of
// the internet send as an account.
func (k *checker) noAuthWarnings() {
	for i := range k.c.Servers {
		s := &k.c.Servers[i]
		if s.NoAuth == nil {
			continue
		}
		for j, f := range s.NoAuth.From {
			p, err := parseNetwork(f)
			if err != nil {
				continue
			}
			if why := wideNetwork(p); why != "" {
				k.addf(fmt.Sprintf("servers[%d].no_auth.from[%d]", i, j), "%s %s: anyone there may send mail as %s without a password; "+
					"list only the networks of the devices that send", quoteShort(f), why, s.NoAuth.Account)
			}
		}
	}
}
