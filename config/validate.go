package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/mail"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xoauthd/xoauthd/internal/passhash"
)

// maxLoginLen bounds a local login name.
const maxLoginLen = 256

// Allowed values, in the order messages list them.
var (
	logLevels   = []string{"debug", "info", "warn", "error"}
	logFormats  = []string{"text", "json"}
	protocols   = []string{ProtoIMAP, ProtoPOP3, ProtoSMTP}
	types       = []string{TypeMicrosoft, TypeGoogle, TypeCustom}
	flows       = []string{FlowAuthCode, FlowDevice, FlowClientCredentials}
	tlsModes    = []string{TLSImplicit, TLSStartTLS}
	tenantWords = []string{"organizations", "common", "consumers"}
)

const hashHint = "generate one with: xoauthd hash-password"

// checker collects validation problems for one Config.
type checker struct {
	c       *Config
	names   []string // provider names, sorted
	ps      Problems
	dropped int // problems beyond maxProblems, counted only
}

// addf records a problem at path, on the line of path or its nearest
// ancestor in the file.
func (k *checker) addf(path, format string, args ...any) {
	if len(k.ps) >= maxProblems {
		k.dropped++
		return
	}
	k.ps = append(k.ps, Problem{Path: path, Line: k.c.lines.line(path), Msg: fmt.Sprintf(format, args...)})
}

// oneOf checks that v is one of allowed; what names the value in messages.
func (k *checker) oneOf(path, what, v string, allowed []string) {
	switch {
	case v == "":
		k.addf(path, "missing; set one of: %s", strings.Join(allowed, ", "))
	case !slices.Contains(allowed, v):
		k.addf(path, "unknown %s %s; known: %s", what, quoteShort(v), strings.Join(allowed, ", "))
	}
}

// Validate checks a configuration whose defaults are filled in (as Parse
// returns it, or after ApplyDefaults) and returns every problem at once as
// Problems, ordered by line. It does no I/O. Messages never contain secrets.
func (c *Config) Validate() error {
	ps, dropped := c.validate()
	return ps.capped(dropped).err()
}

// validate returns the problems (at most maxProblems) and how many more
// there were.
func (c *Config) validate() (Problems, int) {
	k := &checker{c: c, names: slices.Sorted(maps.Keys(c.Providers))}
	k.oneOf("log.level", "log level", c.Log.Level, logLevels)
	k.oneOf("log.format", "log format", c.Log.Format, logFormats)
	if c.Admin.Listen != "" {
		if msg := checkAddr(c.Admin.Listen, false); msg != "" {
			k.addf("admin.listen", "%s", msg)
		}
	}
	if c.Admin.PasswordHash != "" {
		if err := passhash.Check(c.Admin.PasswordHash.Reveal()); err != nil {
			k.addf("admin.password_hash", "%v; %s", err, hashHint)
		} else if c.Admin.Listen == "" {
			k.addf("admin.password_hash", "the console needs admin.listen too (hint: set admin.listen: 127.0.0.1:9925)")
		}
	}
	k.store()
	k.notify() // tokens: and notify: (notify.go)
	for _, name := range k.names {
		k.provider(name, c.Providers[name])
	}
	k.servers()
	k.accounts()
	k.ps.sortByLine()
	return k.ps, k.dropped
}

func (k *checker) store() {
	s := k.c.Store
	if s.Path == "" {
		k.addf("store.path", "missing; the file the encrypted tokens are kept in, like /var/lib/xoauthd/tokens.json")
	}
	switch {
	case s.Key != "":
		if _, err := DecodeKey(s.Key.Reveal()); err != nil {
			k.addf("store.key", "%v", err)
		}
	case s.KeyFile == "":
		k.addf("store.key", "missing; set key: ${file:/etc/xoauthd/store.key}, apart from the token store (created on first run when its directory is writable)")
	}
	k.storeBackend() // store.backend and store.redis (store.go)
}

// provider checks one entry of providers:.
func (k *checker) provider(name string, p *Provider) {
	at := "providers." + name
	if name == "" || strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != "" {
		k.addf(at, "provider name %s may only use letters, digits, - and _", quoteShort(name))
	}
	if p == nil {
		return
	}
	k.oneOf(at+".type", "provider type", p.Type, types)
	k.oneOf(at+".flow", "flow", p.Flow, flows)
	if p.ClientID == "" {
		k.addf(at+".client_id", "missing; copy the application (client) ID of the app registration")
	}
	k.clientCertificate(at, p) // client_secret: and client_certificate: (clientcert.go)
	switch p.Type {
	case TypeMicrosoft:
		k.microsoft(at, p)
	case TypeGoogle:
		if p.Flow == FlowDevice {
			k.addf(at+".flow", "Google's device flow does not allow the Gmail scope; use flow: authcode")
		}
		if p.Flow == FlowClientCredentials {
			k.addf(at+".flow", "Google offers no client_credentials flow for Gmail; use flow: authcode")
		}
	case TypeCustom:
		k.custom(at, p)
	}
	k.urls(at, p)
	for i, s := range p.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			k.addf(fmt.Sprintf("%s.scopes[%d]", at, i), "a scope must be one word without spaces; list each scope separately")
		}
	}
	for _, proto := range slices.Sorted(maps.Keys(p.Upstreams)) {
		path := at + ".upstreams." + proto
		if !slices.Contains(protocols, proto) {
			k.addf(path, "unknown protocol %s; known: %s", quoteShort(proto), strings.Join(protocols, ", "))
		} else if msg := checkAddr(p.Upstreams[proto], true); msg != "" {
			k.addf(path, "%s", msg)
		}
	}
}

// urls checks the endpoint URLs. A microsoft provider's endpoints derive
// from its authority, so a bad authority is reported once, not four times.
func (k *checker) urls(at string, p *Provider) {
	if p.Authority != "" {
		if msg := checkURL(p.Authority); msg != "" {
			k.addf(at+".authority", "%s", msg)
			if p.Type == TypeMicrosoft {
				return
			}
		}
	}
	for _, f := range []struct{ key, val string }{
		{"auth_url", p.AuthURL}, {"token_url", p.TokenURL}, {"device_url", p.DeviceURL},
	} {
		if f.val != "" {
			if msg := checkURL(f.val); msg != "" {
				k.addf(at+"."+f.key, "%s", msg)
			}
		}
	}
}

func (k *checker) microsoft(at string, p *Provider) {
	switch {
	case p.Tenant == "":
		k.addf(at+".tenant", "missing; set the tenant ID or domain, or organizations")
	case strings.ContainsAny(p.Tenant, "/?#% \t"):
		k.addf(at+".tenant", "%s is not a tenant; use the tenant ID (a GUID), a domain like contoso.onmicrosoft.com, organizations, common or consumers", quoteShort(p.Tenant))
	case p.Flow == FlowClientCredentials && slices.Contains(tenantWords, p.Tenant):
		k.addf(at+".tenant", "the client_credentials flow needs your own tenant, not %q; set the tenant ID or domain (like contoso.onmicrosoft.com)", p.Tenant)
	}
}

func (k *checker) custom(at string, p *Provider) {
	if p.TokenURL == "" {
		k.addf(at+".token_url", "missing; a custom provider needs its token endpoint")
	}
	if p.Flow == FlowAuthCode && p.AuthURL == "" {
		k.addf(at+".auth_url", "missing; the authcode flow needs the authorization endpoint")
	}
	if p.Flow == FlowDevice && p.DeviceURL == "" {
		k.addf(at+".device_url", "missing; the device flow needs the device authorization endpoint")
	}
	if len(p.Scopes) == 0 {
		k.addf(at+".scopes", "missing; a custom provider needs the scopes to request")
	}
}

// servers checks servers: and that each one has an upstream for every provider.
func (k *checker) servers() {
	seen := map[string]string{} // normalized listen address → "servers[i] (line n)"
	if k.c.Admin.Listen != "" {
		seen[normalAddr(k.c.Admin.Listen)] = "admin.listen"
	}
	for i := range k.c.Servers {
		s := &k.c.Servers[i]
		at := fmt.Sprintf("servers[%d]", i)
		k.oneOf(at+".protocol", "protocol", s.Protocol, protocols)
		if s.Listen == "" {
			k.addf(at+".listen", "missing; the local address to listen on, like 127.0.0.1:1143")
		} else if msg := checkAddr(s.Listen, false); msg != "" {
			k.addf(at+".listen", "%s", msg)
		} else if key := normalAddr(s.Listen); key != "" {
			if prev, dup := seen[key]; dup {
				k.addf(at+".listen", "address %s is already used by %s", s.Listen, prev)
			} else {
				seen[key] = fmt.Sprintf("%s (line %d)", at, s.Line)
			}
		}
		k.upstream(at, s)
		if s.MaxConnections < 0 {
			k.addf(at+".max_connections", "must not be negative")
		}
		if s.MaxUpstreamPerIdentity < 0 {
			k.addf(at+".max_upstream_per_identity", "must not be negative")
		}
		if s.IdleTimeout < 0 {
			k.addf(at+".idle_timeout", "must not be negative")
		}
		if s.PreAuthTimeout < 0 {
			k.addf(at+".preauth_timeout", "must not be negative")
		} else if s.PreAuthTimeout > MaxPreAuthTimeout {
			k.addf(at+".preauth_timeout", "must be at most %s: a longer wait only lets idle clients hold connection slots", time.Duration(MaxPreAuthTimeout))
		}
		k.listenerTLS(at, s) // tls: and allow_plaintext: (listentls.go)
		k.smtpOnly(at, s)    // no_auth: and send_rate: (noauth.go)
	}
}

// upstream checks a server's upstream, or that every provider supplies one.
func (k *checker) upstream(at string, s *Server) {
	if s.UpstreamTLS != "" {
		k.oneOf(at+".upstream_tls", "upstream TLS mode", s.UpstreamTLS, tlsModes)
	}
	if s.Upstream != "" {
		if msg := checkAddr(s.Upstream, true); msg != "" {
			k.addf(at+".upstream", "%s", msg)
		}
		return
	}
	if !slices.Contains(protocols, s.Protocol) {
		return
	}
	for _, name := range k.names {
		// A provider of unknown type is reported as such, not here.
		p := k.c.Providers[name]
		if p != nil && slices.Contains(types, p.Type) && p.Upstreams[s.Protocol] == "" {
			k.addf(at+".upstream", "missing, and provider %q has no upstreams.%s; set upstream here or on the provider", name, s.Protocol)
		}
	}
}

// accounts checks accounts: logins unique (case-insensitively), addresses,
// provider names and password hashes.
func (k *checker) accounts() {
	seen := map[string]int{} // lowercased login → index
	known := k.names
	for i := range k.c.Accounts {
		a := &k.c.Accounts[i]
		at := fmt.Sprintf("accounts[%d]", i)
		switch {
		case a.Login == "":
			k.addf(at+".login", "missing; the user name the mail client logs in with")
		case len(a.Login) > maxLoginLen:
			k.addf(at+".login", "longer than %d bytes", maxLoginLen)
		case strings.IndexFunc(a.Login, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0:
			k.addf(at+".login", "login %s must not contain spaces or control characters", quoteShort(a.Login))
		default:
			if j, dup := seen[strings.ToLower(a.Login)]; dup {
				k.addf(at+".login", "login %q is already used by accounts[%d] (line %d); logins are case-insensitive", a.Login, j, k.c.Accounts[j].Line)
			} else {
				seen[strings.ToLower(a.Login)] = i
			}
		}
		k.address(at+".identity", a.Identity, "the address whose OAuth token is used, like billing@contoso.com")
		if a.Mailbox != a.Identity {
			k.address(at+".mailbox", a.Mailbox, "the mailbox to open, like shared@contoso.com")
		}
		k.accountProvider(at+".provider", a.Provider, known)
		switch err := passhash.Check(a.PasswordHash.Reveal()); {
		case a.PasswordHash == "":
			k.addf(at+".password_hash", "missing; %s", hashHint)
		case err != nil:
			k.addf(at+".password_hash", "%v; %s", err, hashHint)
		}
	}
}

func (k *checker) address(path, v, what string) {
	if v == "" {
		k.addf(path, "missing; %s", what)
		return
	}
	if a, err := mail.ParseAddress(v); err != nil || a.Address != v || a.Name != "" {
		k.addf(path, "%s is not an email address; write %s", quoteShort(v), what)
	}
}

func (k *checker) accountProvider(path, name string, known []string) {
	switch {
	case len(known) == 0:
		k.addf(path, "no providers are configured; add one under providers:")
	case name == "":
		k.addf(path, "missing; name one of: %s", listNames(known))
	case !slices.Contains(known, name):
		k.addf(path, "unknown provider %s; known: %s", quoteShort(name), listNames(known))
	}
}

// maxListed bounds how many names a message lists.
const maxListed = 10

// listNames joins names for a message, eliding after maxListed.
func listNames(names []string) string {
	if len(names) > maxListed {
		return fmt.Sprintf("%s, ... (%d in all)", strings.Join(names[:maxListed], ", "), len(names))
	}
	return strings.Join(names, ", ")
}

// checkAddr checks host:port; an upstream needs a host and a non-zero port,
// a listener may leave the host empty (all interfaces) and use port 0 (any).
// It returns "" when addr is fine.
func checkAddr(addr string, upstream bool) string {
	example := "127.0.0.1:1143"
	if upstream {
		example = "outlook.office365.com:993"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		reason := err.Error()
		if errors.As(err, &ae) {
			reason = ae.Err
		}
		return fmt.Sprintf("%s is not host:port (%s); write it like %s", quoteShort(addr), reason, example)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 || (upstream && n == 0) {
		return fmt.Sprintf("port %s is not a number from 1 to 65535", quoteShort(port))
	}
	if upstream && host == "" {
		return fmt.Sprintf("%s has no host; write it like %s", quoteShort(addr), example)
	}
	return ""
}

// normalAddr gives a comparable form of a listen address, or "" for port 0.
func normalAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "0" {
		return ""
	}
	if ip := net.ParseIP(host); ip != nil {
		host = ip.String()
	}
	return net.JoinHostPort(strings.ToLower(host), port)
}

// checkURL requires an absolute https URL, or http for a loopback host (a
// local test identity provider). It returns "" when u is fine.
func checkURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Sprintf("%s is not an absolute https URL", quoteShort(raw))
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return fmt.Sprintf("%s must use https (http is allowed for localhost only)", quoteShort(raw))
	}
	return ""
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
