package config

import (
	"maps"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Protocols a server speaks, and the keys of Provider.Upstreams.
const (
	ProtoIMAP = "imap"
	ProtoPOP3 = "pop3"
	ProtoSMTP = "smtp"
)

// Provider types.
const (
	TypeMicrosoft = "microsoft"
	TypeGoogle    = "google"
	TypeCustom    = "custom"
)

// OAuth flows a provider uses to obtain tokens.
const (
	FlowAuthCode          = "authcode"           // authorization code + PKCE, loopback redirect
	FlowDevice            = "device"             // device authorization grant (RFC 8628)
	FlowClientCredentials = "client_credentials" // app-only, no user
)

// Upstream TLS modes.
const (
	TLSImplicit = "implicit" // TLS from the first byte (993, 995, 465)
	TLSStartTLS = "starttls" // plain greeting, then STARTTLS/STLS (587, 25)
)

// Defaults that are not part of a provider preset.
const (
	DefaultLogLevel            = "info"
	DefaultLogFormat           = "text"
	DefaultMaxConnections      = 1000
	DefaultIdleTimeout         = Duration(31 * time.Minute) // RFC 9051: IDLE clients re-issue every 29 min
	DefaultIdleTimeoutSMTP     = Duration(5 * time.Minute)  // RFC 5321 section 4.5.3.2.7: at least 5 min per command
	DefaultPreAuthTimeout      = Duration(time.Minute)      // the whole dialogue before login
	MaxPreAuthTimeout          = Duration(10 * time.Minute) // longer only keeps idle connections' slots taken
	DefaultMaxUpstreamSMTP     = 3                          // Exchange Online's concurrent SMTP AUTH limit per mailbox
	DefaultMaxUpstream         = 20                         // commonly quoted IMAP/POP limit per mailbox
	DefaultStoreFile           = "tokens.json"              // beside the configuration file
	DefaultKeyFile             = "store.key"                // beside the configuration file, apart from the token store
	DefaultTLSMinVersion       = "1.2"                      // local TLS; 1.0 and 1.1 only by opt-in
	DefaultMicrosoftAuthority  = "https://login.microsoftonline.com"
	DefaultMicrosoftTenant     = "organizations"
	microsoftAppOnlyScope      = "https://outlook.office365.com/.default"
	googleAuthURL              = "https://accounts.google.com/o/oauth2/v2/auth"
	googleTokenURL             = "https://oauth2.googleapis.com/token"
	googleDeviceURL            = "https://oauth2.googleapis.com/device/code"
	microsoftEndpointsTemplate = "/oauth2/v2.0/"
)

// microsoftDelegatedScopes are requested for the user flows: one token serves
// IMAP, POP3 and SMTP (oidcScopes are added to them).
func microsoftDelegatedScopes() []string {
	return []string{
		"https://outlook.office.com/IMAP.AccessAsUser.All",
		"https://outlook.office.com/POP.AccessAsUser.All",
		"https://outlook.office.com/SMTP.Send",
		"offline_access",
	}
}

// oidcScopes are added to the scopes of a user flow, written ones
// included, so that the provider returns an id_token naming who signed in
// (the identity check of login and the token step). Microsoft names the
// user in preferred_username (profile) or email; Google in email, so
// Google's profile scope (name and picture) is not asked for.
func oidcScopes(typ string) []string {
	switch typ {
	case TypeMicrosoft:
		return []string{"openid", "profile", "email"}
	case TypeGoogle:
		return []string{"openid", "email"}
	}
	return nil
}

// presetUpstreams returns a fresh copy of a provider type's mail hosts.
func presetUpstreams(typ string) map[string]string {
	switch typ {
	case TypeMicrosoft:
		return map[string]string{
			ProtoIMAP: "outlook.office365.com:993",
			ProtoPOP3: "outlook.office365.com:995",
			ProtoSMTP: "smtp.office365.com:587",
		}
	case TypeGoogle:
		return map[string]string{
			ProtoIMAP: "imap.gmail.com:993",
			ProtoPOP3: "pop.gmail.com:995",
			ProtoSMTP: "smtp.gmail.com:587",
		}
	}
	return nil
}

// ApplyDefaults fills in every default and provider preset that is not set.
// Parse calls it; call it yourself only on a Config built in code, before
// Validate. It is idempotent and does no I/O.
func (c *Config) ApplyDefaults() {
	if c.Log.Level == "" {
		c.Log.Level = DefaultLogLevel
	}
	if c.Log.Format == "" {
		c.Log.Format = DefaultLogFormat
	}
	if c.Store.Path == "" {
		c.Store.Path = filepath.Join(filepath.Dir(c.Path), DefaultStoreFile)
	}
	if c.Store.Key == "" && c.Store.KeyFile == "" {
		// Beside the configuration, not the store: the two are backed up and
		// mounted apart (/etc/xoauthd, /var/lib/xoauthd), so one leaked
		// backup or volume does not hold both (SECURITY.md).
		c.Store.KeyFile = filepath.Join(filepath.Dir(c.Path), DefaultKeyFile)
	}
	c.Store.applyDefaults() // store.backend and store.redis (store.go)
	c.applyNotifyDefaults() // tokens: and notify: (notify.go)
	for name, p := range c.Providers {
		if p != nil {
			p.Name = name
			p.applyDefaults()
		}
	}
	for i := range c.Servers {
		c.Servers[i].applyDefaults()
	}
	for i := range c.Accounts {
		a := &c.Accounts[i]
		if a.Mailbox == "" {
			a.Mailbox = a.Identity
		}
		if a.Provider == "" && len(c.Providers) == 1 {
			for name := range c.Providers {
				a.Provider = name
			}
		}
	}
}

// Resolved returns a copy of p with its type's preset filled in wherever p
// leaves something empty, as Parse does for every provider of a
// configuration (idempotent); p itself is not changed. This is the one
// place that knows a type's endpoints, scopes and tenant default: package
// tokens reads them from here.
func (p *Provider) Resolved() *Provider {
	q := *p
	q.Scopes = slices.Clone(p.Scopes)
	q.Upstreams = maps.Clone(p.Upstreams)
	q.applyDefaults()
	return &q
}

// applyDefaults fills the provider's flow, endpoints, scopes and upstreams
// from its type's preset.
func (p *Provider) applyDefaults() {
	if p.Flow == "" {
		p.Flow = FlowAuthCode
	}
	switch p.Type {
	case TypeMicrosoft:
		if p.Tenant == "" {
			p.Tenant = DefaultMicrosoftTenant
		}
		if p.Authority == "" {
			p.Authority = DefaultMicrosoftAuthority
		}
		// The tenant is one path segment ({tenant} in
		// https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token).
		base := strings.TrimRight(p.Authority, "/") + "/" + url.PathEscape(p.Tenant) + microsoftEndpointsTemplate
		setDefault(&p.AuthURL, base+"authorize")
		setDefault(&p.TokenURL, base+"token")
		setDefault(&p.DeviceURL, base+"devicecode")
		if len(p.Scopes) == 0 {
			if p.Flow == FlowClientCredentials {
				p.Scopes = []string{microsoftAppOnlyScope}
			} else {
				p.Scopes = microsoftDelegatedScopes()
			}
		}
	case TypeGoogle:
		setDefault(&p.AuthURL, googleAuthURL)
		setDefault(&p.TokenURL, googleTokenURL)
		setDefault(&p.DeviceURL, googleDeviceURL)
		if len(p.Scopes) == 0 {
			p.Scopes = []string{"https://mail.google.com/"}
		}
	}
	if p.Flow != FlowClientCredentials {
		for _, s := range oidcScopes(p.Type) {
			if !slices.Contains(p.Scopes, s) {
				p.Scopes = append(p.Scopes, s)
			}
		}
	}
	preset := presetUpstreams(p.Type)
	if len(preset) > 0 && p.Upstreams == nil {
		p.Upstreams = map[string]string{}
	}
	for proto, addr := range preset {
		if p.Upstreams[proto] == "" {
			p.Upstreams[proto] = addr
		}
	}
}

func setDefault(field *string, value string) {
	if *field == "" {
		*field = value
	}
}

// applyDefaults fills limits and, when the upstream is set, its TLS mode.
func (s *Server) applyDefaults() {
	if s.MaxConnections == 0 {
		s.MaxConnections = DefaultMaxConnections
	}
	if s.IdleTimeout == 0 {
		s.IdleTimeout = DefaultIdleTimeout
		if s.Protocol == ProtoSMTP {
			s.IdleTimeout = DefaultIdleTimeoutSMTP
		}
	}
	if s.PreAuthTimeout == 0 {
		s.PreAuthTimeout = DefaultPreAuthTimeout
	}
	if s.MaxUpstreamPerIdentity == 0 {
		s.MaxUpstreamPerIdentity = DefaultMaxUpstream
		if s.Protocol == ProtoSMTP {
			s.MaxUpstreamPerIdentity = DefaultMaxUpstreamSMTP
		}
	}
	if s.UpstreamTLS == "" && s.Upstream != "" {
		s.UpstreamTLS = tlsModeForPort(s.Upstream)
	}
	if s.TLS != nil && s.TLS.Mode == "" {
		s.TLS.Mode = TLSStartTLS
	}
	if s.TLS != nil && s.TLS.MinVersion == "" {
		s.TLS.MinVersion = DefaultTLSMinVersion
	}
}

// UpstreamFor returns the upstream host:port and TLS mode this server uses
// for an account of provider p: the server's own upstream when set, else the
// provider's upstream for the server's protocol; the mode is upstream_tls
// when set, else chosen by port (587 and 25: starttls; others: implicit).
func (s *Server) UpstreamFor(p *Provider) (addr, tlsMode string) {
	addr = s.Upstream
	if addr == "" && p != nil {
		addr = p.Upstreams[s.Protocol]
	}
	tlsMode = s.UpstreamTLS
	if tlsMode == "" {
		tlsMode = tlsModeForPort(addr)
	}
	return addr, tlsMode
}

// tlsModeForPort picks the TLS mode by the port's convention.
func tlsModeForPort(addr string) string {
	if _, port, err := net.SplitHostPort(addr); err == nil && (port == "587" || port == "25") {
		return TLSStartTLS
	}
	return TLSImplicit
}

// Account returns the account whose login matches (case-insensitively), or
// nil when there is none. The account belongs to the snapshot: do not modify it.
func (c *Config) Account(login string) *Account {
	for i := range c.Accounts {
		if strings.EqualFold(c.Accounts[i].Login, login) {
			return &c.Accounts[i]
		}
	}
	return nil
}
