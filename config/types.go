package config

import "time"

// Config is one immutable snapshot of the configuration. Nothing mutates a
// Config after Load returns it; a reload builds a new one.
type Config struct {
	Log       Log                  `yaml:"log"`
	Admin     Admin                `yaml:"admin"`
	Store     Store                `yaml:"store"`
	Tokens    Tokens               `yaml:"tokens"` // keep-alive of idle identities (notify.go)
	Notify    Notify               `yaml:"notify"` // who hears when an identity needs a person (notify.go)
	Providers map[string]*Provider `yaml:"providers"`
	Servers   []Server             `yaml:"servers"`
	Accounts  []Account            `yaml:"accounts"`

	// Path is the file the configuration was loaded from ("" when parsed from bytes).
	Path string `yaml:"-"`

	// lines maps YAML paths to their line in the file (set by Parse), so
	// Validate can name lines; nil for a Config built in code.
	lines lineIndex
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error (default info)
	Format string `yaml:"format"` // text | json (default text)
	Trace  bool   `yaml:"trace"`  // protocol traces (redacted) at debug level
}

// Admin configures the admin HTTP endpoint (/healthz, /readyz, /metrics)
// and the console it serves at /.
type Admin struct {
	Listen string `yaml:"listen"` // empty: disabled
	// PasswordHash is the console's password as an argon2id PHC string
	// from xoauthd hash-password; empty: the console is off.
	PasswordHash Secret `yaml:"password_hash"`
}

// Store configures the encrypted token store.
type Store struct {
	Path string `yaml:"path"`
	Key  Secret `yaml:"key"` // 32 bytes, base64 or hex; usually ${file:...}
	// KeyFile is the file named by a ${file:PATH} reference in key, so the
	// key can be created (mode 0600) when it does not exist yet.
	KeyFile string `yaml:"-"`
	// Backend is where the tokens are kept: BackendFile (path) or
	// BackendRedis (redis, shared by several replicas); see store.go.
	Backend string     `yaml:"backend"`
	Redis   RedisStore `yaml:"redis"`
}

// Provider is an OAuth 2.0 identity provider (an app registration).
type Provider struct {
	Name         string   `yaml:"-"`             // the key in providers:
	Type         string   `yaml:"type"`          // microsoft | google | custom
	Tenant       string   `yaml:"tenant"`        // microsoft: GUID, domain, organizations, common, consumers
	ClientID     string   `yaml:"client_id"`     //
	ClientSecret Secret   `yaml:"client_secret"` // empty: public client (or a client_certificate)
	Flow         string   `yaml:"flow"`          // authcode | device | client_credentials
	Authority    string   `yaml:"authority"`     // microsoft: default https://login.microsoftonline.com
	AuthURL      string   `yaml:"auth_url"`      // filled from the preset unless set
	TokenURL     string   `yaml:"token_url"`     // filled from the preset unless set
	DeviceURL    string   `yaml:"device_url"`    // filled from the preset unless set
	Scopes       []string `yaml:"scopes"`        // filled from the preset unless set
	// Upstreams are the default upstream host:port per protocol (imap, pop3, smtp).
	Upstreams map[string]string `yaml:"upstreams"`
	// ClientCertificate authenticates the app with a certificate instead
	// of ClientSecret (clientcert.go).
	ClientCertificate *ClientCertificate `yaml:"client_certificate"`
	// Line is the line of this entry in the file, for messages.
	Line int `yaml:"-"`
}

// Server is one local listener and the upstream it relays to.
type Server struct {
	Protocol    string `yaml:"protocol"`     // imap | pop3 | smtp
	Listen      string `yaml:"listen"`       // host:port
	Upstream    string `yaml:"upstream"`     // host:port; default from the account's provider
	UpstreamTLS string `yaml:"upstream_tls"` // implicit | starttls; default by port (587: starttls)
	CAFile      string `yaml:"ca_file"`      // extra CA for the upstream certificate
	// MaxConnections bounds concurrent client connections (default 1000).
	MaxConnections int `yaml:"max_connections"`
	// IdleTimeout ends a relayed IMAP or POP3 session after this long
	// without traffic (default 31m so IMAP IDLE survives), and an SMTP
	// session that waits this long for a command or message data, with
	// 421 4.4.2 (default 5m, RFC 5321's minimum).
	IdleTimeout Duration `yaml:"idle_timeout"`
	// PreAuthTimeout bounds the whole dialogue before a successful login
	// (greeting, capabilities, credentials), so a client that connects and
	// says nothing, or trickles bytes, frees its slot (default 60s).
	PreAuthTimeout Duration `yaml:"preauth_timeout"`
	// MaxUpstreamPerIdentity bounds concurrent upstream sessions per identity
	// (SMTP default 3, Exchange's limit; others default 20).
	MaxUpstreamPerIdentity int `yaml:"max_upstream_per_identity"`
	// TLS towards local clients; nil: plaintext only (see AllowPlaintext).
	TLS *ListenerTLS `yaml:"tls"`
	// AllowPlaintext lets a listener on a non-loopback address run without
	// TLS, or with TLS but accepting logins before STARTTLS/STLS: passwords
	// then cross the network in clear text. Off by default (LoginNeedsTLS).
	AllowPlaintext bool `yaml:"allow_plaintext"`
	// NoAuth lets clients from some networks send without AUTH, as one
	// account (smtp only; noauth.go).
	NoAuth *NoAuth `yaml:"no_auth"`
	// SendRate paces the messages of each identity sent through this SMTP
	// server, unless the account sets its own; nil: the provider's default
	// (sendrate.go).
	SendRate *SendRate `yaml:"send_rate"`
	// Line is the line of this entry in the file, for messages.
	Line int `yaml:"-"`
}

// ListenerTLS configures TLS towards local clients: a certificate and key
// from files (reloaded when they change), or a self-signed certificate for
// one host name that xoauthd makes on first start and keeps beside the
// token store.
type ListenerTLS struct {
	Cert       string `yaml:"cert"`        // PEM certificate chain, leaf first
	Key        string `yaml:"key"`         // PEM private key
	SelfSigned string `yaml:"self_signed"` // host name or IP address; instead of cert and key
	Mode       string `yaml:"mode"`        // starttls (default) | implicit
	// MinVersion is the oldest TLS version accepted from mail clients:
	// "1.2" (default) or "1.3"; "1.0" or "1.1" let in legacy clients that
	// cannot do better (.NET Framework's SmtpClient), with the CBC cipher
	// suites they offer. On the local hop only: the upstream stays at TLS
	// 1.2 or later. Read it with TLSVersion.
	MinVersion string `yaml:"min_version"`
	// AllowLegacyOnNetwork acknowledges a min_version below 1.2 on a
	// listener that is not on a loopback address.
	AllowLegacyOnNetwork bool `yaml:"allow_legacy_on_network"`
}

// Account maps a local login to an OAuth identity and mailbox.
type Account struct {
	Login        string `yaml:"login"`
	PasswordHash Secret `yaml:"password_hash"` // argon2id PHC string
	Identity     string `yaml:"identity"`      // whose token; the store key
	Mailbox      string `yaml:"mailbox"`       // IMAP/POP3 user=; default identity
	Provider     string `yaml:"provider"`      // key in providers:
	Line         int    `yaml:"-"`
	// SendRate paces this account's messages through SMTP; nil: the
	// server's send_rate or the provider's default (sendrate.go).
	SendRate *SendRate `yaml:"send_rate"`
}

// Duration is a time.Duration written with units in YAML ("30s", "31m").
type Duration time.Duration

// Secret is a string that never prints: String, GoString and LogValue give
// "***". Reveal returns the value for the one place that needs it.
type Secret string

// Tokens tunes how xoauthd looks after the stored tokens.
type Tokens struct {
	// Keepalive: an identity whose refresh token has not been used (by a
	// login or a refresh) for this long is refreshed in the background, so
	// that the provider does not expire it for inactivity (Microsoft: 90
	// days). Default 24h; 0 turns it off. Read it with KeepaliveInterval.
	Keepalive *Duration `yaml:"keepalive"`
}

// Notify says how an administrator hears, besides the log, that an identity
// needs a person: a new login, or a fix of the app registration.
type Notify struct {
	// Command is run with the alert as JSON on stdin and in XOAUTHD_*
	// environment variables: the program (an absolute path) and its
	// arguments, without a shell.
	Command []string `yaml:"command"`
	// Webhook receives the alert as a JSON POST: https, or http to a
	// loopback address. A Secret, because hook URLs often carry a token.
	Webhook Secret `yaml:"webhook"`
	// Timeout bounds one run of the command and one webhook request
	// (default 10s).
	Timeout Duration `yaml:"timeout"`
}
