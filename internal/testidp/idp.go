package testidp

import (
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Defaults for Options fields left zero.
const (
	DefaultTenant              = "contoso.onmicrosoft.com"
	DefaultAddr                = "127.0.0.1:0"
	DefaultAccessTokenLifetime = 75 * time.Minute
	DefaultDeviceCodeLifetime  = 15 * time.Minute
	DefaultDeviceInterval      = 5 * time.Second
	DefaultCodeLifetime        = 10 * time.Minute
)

// Server limits.
const (
	maxFormBytes      = 64 << 10 // largest accepted form body
	maxHeaderBytes    = 64 << 10 // largest accepted request header block, query included
	readHeaderTimeout = 10 * time.Second
	signingKeyBytes   = 32
)

// Options configure an IdP. The zero value is usable.
type Options struct {
	// Tenant is the directory's domain name, default DefaultTenant. The
	// endpoints accept it, the derived tenant GUID (TenantID) and the aliases
	// "common", "organizations" and "consumers"; any other tenant path
	// segment gets AADSTS90002.
	Tenant string
	// Addr is the listen address, default DefaultAddr.
	Addr string
	// SigningKey is the HS256 key for access and id tokens; 32 random bytes
	// when nil.
	SigningKey []byte
	// AccessTokenLifetime is the lifetime of issued access tokens, default
	// DefaultAccessTokenLifetime; a negative value issues expired tokens.
	// SetAccessTokenLifetime changes it later.
	AccessTokenLifetime time.Duration
	// Issuer is the iss claim, default
	// "https://login.microsoftonline.com/{TenantID}/v2.0" (never contacted).
	Issuer string
	// DeviceCodeLifetime is how long a device code stays valid (expires_in),
	// default DefaultDeviceCodeLifetime.
	DeviceCodeLifetime time.Duration
	// DeviceInterval is the polling interval of the device flow, default
	// DefaultDeviceInterval. The wire field interval is whole seconds, so a
	// value below one second is announced as 1; polls closer together than
	// three quarters of DeviceInterval get slow_down. A negative value
	// announces 1 and never answers slow_down.
	DeviceInterval time.Duration
	// CodeLifetime is how long an authorization code can be redeemed,
	// default DefaultCodeLifetime (Microsoft: about 10 minutes).
	CodeLifetime time.Duration
	// AppTokenEmail, when set, is put into the email, upn and
	// preferred_username claims of app-only (client credentials) tokens.
	// Microsoft's app-only tokens carry no user claims; this switch exists
	// so a Dovecot rig validating username_attribute=email can accept
	// app-only tokens for this one mailbox.
	AppTokenEmail string
	// ClockSkew is added to the IdP's clock where it checks client
	// assertions' times, as if this machine's clock were that far behind.
	ClockSkew time.Duration
	// Logger receives a debug line per answered request (never tokens or
	// secrets); nil discards.
	Logger *slog.Logger
}

// Client is an app registration.
type Client struct {
	// ID is the application (client) id.
	ID string
	// Secret is the client secret value of a confidential client.
	Secret string
	// Public marks a public client ("Allow public client flows"): it must
	// not send a secret (AADSTS700025). A confidential client must send its
	// secret on every token request (AADSTS7000218, AADSTS7000215).
	Public bool
	// Certificates are the certificates uploaded to the app registration:
	// the client may authenticate with a client assertion signed by one of
	// their keys instead of the secret (assertion.go).
	Certificates []*x509.Certificate
}

// Failure makes the token and devicecode endpoints fail (see FailWith).
type Failure struct {
	// Status is the HTTP status to answer, default 500 (200 with
	// MalformedJSON). The body is a Microsoft error JSON for it.
	Status int
	// RetryAfter, when positive, is sent as Retry-After in whole seconds
	// (rounded up).
	RetryAfter time.Duration
	// Hang holds the request open until the client gives up or the IdP is
	// closed; nothing is written.
	Hang bool
	// MalformedJSON answers a truncated JSON body instead of an error.
	MalformedJSON bool
	// Count is the number of requests to fail; 0 fails until ClearFailure.
	Count int
}

// IdP is a running identity provider. All methods are safe for concurrent
// use.
type IdP struct {
	opts      Options // defaults filled in; read-only after start
	tenantID  string
	authority string
	now       func() time.Time
	log       *slog.Logger
	srv       *http.Server
	done      chan struct{} // closed by Close; releases hanging handlers
	closeOnce sync.Once

	mu         sync.Mutex
	clients    map[string]Client
	users      map[string]*user // by lower-case address
	signedIn   string
	atLifetime time.Duration
	codes      map[string]*authCode
	refresh    map[string]*refreshGrant
	devices    map[string]*deviceGrant // by device_code
	userCodes  map[string]*deviceGrant // by user_code
	failure    *Failure                // nil when not failing; Count counts down
	counts     map[string]int
	autoUser   string // device auto-approval; "" disabled
	autoAfter  int

	jtis map[string]time.Time // client assertions used: "client_id jti" → until when remembered

	hold *Hold // the last armed by HoldTokenRequests; nil before
}

// Start starts an IdP listening on opts.Addr. Close it when done.
func Start(opts Options) (*IdP, error) {
	return start(opts, time.Now)
}

func start(opts Options, now func() time.Time) (*IdP, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("starting test identity provider on %s: %w (hint: use a free loopback address such as 127.0.0.1:0)", o.Addr, err)
	}
	p := &IdP{
		opts:       o,
		tenantID:   tenantGUID(o.Tenant),
		authority:  "http://" + ln.Addr().String(),
		now:        now,
		log:        o.Logger,
		done:       make(chan struct{}),
		clients:    map[string]Client{},
		users:      map[string]*user{},
		atLifetime: o.AccessTokenLifetime,
		codes:      map[string]*authCode{},
		refresh:    map[string]*refreshGrant{},
		devices:    map[string]*deviceGrant{},
		userCodes:  map[string]*deviceGrant{},
		counts:     map[string]int{},
		jtis:       map[string]time.Time{},
	}
	if p.opts.Issuer == "" {
		p.opts.Issuer = "https://login.microsoftonline.com/" + p.tenantID + "/v2.0"
	}
	p.srv = &http.Server{
		Handler:           p.routes(),
		ReadHeaderTimeout: readHeaderTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	go func() {
		if err := p.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("test identity provider stopped", "err", err)
		}
	}()
	return p, nil
}

func (o Options) withDefaults() (Options, error) {
	if o.Tenant == "" {
		o.Tenant = DefaultTenant
	}
	o.Tenant = strings.ToLower(o.Tenant)
	if strings.ContainsAny(o.Tenant, "/?# ") {
		return o, fmt.Errorf("tenant %q must be one path segment such as %q", o.Tenant, DefaultTenant)
	}
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
	if o.SigningKey == nil {
		o.SigningKey = make([]byte, signingKeyBytes)
		_, _ = rand.Read(o.SigningKey)
	} else {
		o.SigningKey = append([]byte(nil), o.SigningKey...)
	}
	if len(o.SigningKey) == 0 {
		return o, errors.New("signing key is empty; leave it nil for a random key")
	}
	if o.AccessTokenLifetime == 0 {
		o.AccessTokenLifetime = DefaultAccessTokenLifetime
	}
	if o.DeviceCodeLifetime <= 0 {
		o.DeviceCodeLifetime = DefaultDeviceCodeLifetime
	}
	if o.DeviceInterval == 0 {
		o.DeviceInterval = DefaultDeviceInterval
	}
	if o.CodeLifetime <= 0 {
		o.CodeLifetime = DefaultCodeLifetime
	}
	o.AppTokenEmail = strings.ToLower(o.AppTokenEmail)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

func (p *IdP) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/{tenant}/oauth2/v2.0/authorize", p.handleAuthorize)
	mux.HandleFunc("/{tenant}/oauth2/v2.0/token", p.handleToken)
	mux.HandleFunc("/{tenant}/oauth2/v2.0/devicecode", p.handleDeviceCode)
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", p.handleDiscovery)
	return mux
}

// Close stops the server at once, dropping open connections; requests held
// by a Hang failure return immediately. Close is idempotent.
func (p *IdP) Close() {
	p.closeOnce.Do(func() {
		close(p.done)
		_ = p.srv.Close()
	})
}

// Authority is the base URL, "http://127.0.0.1:PORT", to use as the
// configured authority; endpoints are {Authority}/{tenant}/oauth2/v2.0/….
func (p *IdP) Authority() string { return p.authority }

// Tenant is the configured tenant domain (lower-case).
func (p *IdP) Tenant() string { return p.opts.Tenant }

// TenantID is the tenant GUID: the tid claim, derived from the tenant name
// so it is stable across restarts.
func (p *IdP) TenantID() string { return p.tenantID }

// Issuer is the iss claim of every token.
func (p *IdP) Issuer() string { return p.opts.Issuer }

// SigningKey returns a copy of the HS256 key of access and id tokens.
func (p *IdP) SigningKey() []byte { return append([]byte(nil), p.opts.SigningKey...) }

// AddClient registers (or replaces) an app registration.
func (p *IdP) AddClient(c Client) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clients[c.ID] = c
}

// AddUser adds a user account to the directory; addresses are
// case-insensitive. Adding an existing user changes nothing.
func (p *IdP) AddUser(email string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.userLocked(email)
}

// SetSignedInUser simulates browser single sign-on: the authorize endpoint
// signs in this user whatever login_hint says (the user is added when
// missing). "" returns to signing in the login_hint user.
func (p *IdP) SetSignedInUser(email string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.signedIn = strings.ToLower(email)
	if email != "" {
		p.userLocked(email)
	}
}

// SetAccessTokenLifetime sets the lifetime of access tokens issued from now
// on. A zero or negative lifetime issues tokens that are already expired
// (expires_in of -1 or less, never 0, which clients read as "no expiry").
func (p *IdP) SetAccessTokenLifetime(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.atLifetime = d
}

// RevokeUser invalidates every refresh token issued to the user so far:
// using one gets invalid_grant with AADSTS700082. Tokens from a later
// sign-in work.
func (p *IdP) RevokeUser(email string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.userLocked(email).revokeEpoch++
}

// RequireMFA makes every refresh token issued to the user so far fail with
// invalid_grant, AADSTS50076 and suberror basic_action, as when Conditional
// Access starts demanding MFA. An interactive sign-in afterwards satisfies it.
func (p *IdP) RequireMFA(email string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.userLocked(email).mfaEpoch++
}

// FailWith makes the token and devicecode endpoints fail as f describes
// until f.Count requests failed or ClearFailure. Failed requests are still
// counted by Counts.
func (p *IdP) FailWith(f Failure) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f.Count < 0 {
		f.Count = 0
	}
	p.failure = &f
}

// ClearFailure ends a failure set by FailWith.
func (p *IdP) ClearFailure() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failure = nil
}

// Counts returns how many requests arrived, keyed by grant_type for the
// token endpoint ("authorization_code", "refresh_token",
// "urn:ietf:params:oauth:grant-type:device_code", "client_credentials", or
// whatever else was sent), "devicecode" for the devicecode endpoint and
// "authorize" for authorize requests (HTTP or Authorize). Every request
// counts, failed ones included.
func (p *IdP) Counts() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.counts))
	for k, v := range p.counts {
		out[k] = v
	}
	return out
}

func (p *IdP) count(key string) {
	if key == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts[key]++
}

// MintAccessToken returns a valid delegated access token for user with the
// Outlook IMAP, POP and SMTP scopes, without any flow.
func (p *IdP) MintAccessToken(user string, ttl time.Duration) string {
	return p.accessToken(tokenGrant{user: strings.ToLower(user), scopes: parseScopes(defaultDelegatedScopes)}, p.now(), ttl)
}

// RefreshTokenFor returns a refresh token as if user had signed in to
// clientID with the Outlook scopes, offline_access, openid, profile and
// email (the user is added when missing).
func (p *IdP) RefreshTokenFor(user, clientID string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	u := p.userLocked(user)
	return p.newRefreshLocked(clientID, u, parseScopes(defaultDelegatedScopes), p.now())
}
