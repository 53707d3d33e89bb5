package tokens

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/xoauthd/xoauthd/config"
)

// Endpoint defaults, used when the configuration leaves them empty.
const (
	googleAuthURL   = "https://accounts.google.com/o/oauth2/v2/auth"
	googleTokenURL  = "https://oauth2.googleapis.com/token"
	googleDeviceURL = "https://oauth2.googleapis.com/device/code"
	// defaultLifetime is assumed when a token response has no expires_in.
	defaultLifetime = 30 * time.Minute
)

// Scopes of the built-in providers.
var (
	microsoftDelegatedScopes = []string{
		"https://outlook.office.com/IMAP.AccessAsUser.All",
		"https://outlook.office.com/POP.AccessAsUser.All",
		"https://outlook.office.com/SMTP.Send",
		"offline_access",
	}
	microsoftAppScopes = []string{"https://outlook.office365.com/.default"}
	googleScopes       = []string{"https://mail.google.com/"}
	// oidcScopes make the provider return an id_token naming the signed-in user.
	oidcScopes = []string{"openid", "profile", "email"}
)

// Credential authenticates the application (the OAuth client) at the token
// endpoint. A nil Credential is a public client that sends only client_id.
// ClientSecret sends a shared secret; ClientCertificate a signed assertion
// (assertion.go).
type Credential interface {
	// TokenParams returns the form parameters that authenticate clientID on
	// one request to tokenURL.
	TokenParams(ctx context.Context, clientID, tokenURL string) (url.Values, error)
}

// ClientSecret authenticates the application with a shared secret.
type ClientSecret struct {
	Secret config.Secret
}

// TokenParams returns client_secret.
func (c ClientSecret) TokenParams(context.Context, string, string) (url.Values, error) {
	return url.Values{"client_secret": {c.Secret.Reveal()}}, nil
}

// CredentialFor returns the credential configured for p, nil for a public client.
func CredentialFor(p *config.Provider) Credential {
	switch {
	case p.ClientCertificate != nil:
		return ClientCertificate{Files: *p.ClientCertificate}
	case p.ClientSecret != "":
		return ClientSecret{Secret: p.ClientSecret}
	}
	return nil
}

// provider is a config.Provider with every endpoint and scope resolved.
type provider struct {
	name      string
	kind      string
	flow      string
	clientID  string
	cred      Credential
	authURL   string
	tokenURL  string
	deviceURL string
	scopes    []string // requested at login and on every refresh
}

// resolveProvider fills the endpoints and scopes that the configuration left
// empty from the provider type's defaults.
func resolveProvider(p *config.Provider) (*provider, error) {
	if p == nil {
		return nil, fmt.Errorf("no provider")
	}
	r := &provider{
		name: p.Name, kind: strings.ToLower(p.Type), flow: strings.ToLower(p.Flow),
		clientID: p.ClientID, cred: CredentialFor(p),
		authURL: p.AuthURL, tokenURL: p.TokenURL, deviceURL: p.DeviceURL,
		scopes: slices.Clone(p.Scopes),
	}
	if r.flow == "" {
		r.flow = config.FlowAuthCode
	}
	if r.kind == "" {
		r.kind = config.TypeMicrosoft
	}
	switch r.kind {
	case config.TypeMicrosoft:
		authority := strings.TrimSuffix(p.Authority, "/")
		if authority == "" {
			authority = config.DefaultMicrosoftAuthority
		}
		tenant := p.Tenant
		if tenant == "" {
			tenant = config.DefaultMicrosoftTenant
		}
		base := authority + "/" + url.PathEscape(tenant) + "/oauth2/v2.0/"
		r.authURL = orDefault(r.authURL, base+"authorize")
		r.tokenURL = orDefault(r.tokenURL, base+"token")
		r.deviceURL = orDefault(r.deviceURL, base+"devicecode")
		if len(r.scopes) == 0 {
			r.scopes = slices.Clone(microsoftDelegatedScopes)
			if r.flow == config.FlowClientCredentials {
				r.scopes = slices.Clone(microsoftAppScopes)
			}
		}
	case config.TypeGoogle:
		r.authURL = orDefault(r.authURL, googleAuthURL)
		r.tokenURL = orDefault(r.tokenURL, googleTokenURL)
		r.deviceURL = orDefault(r.deviceURL, googleDeviceURL)
		if len(r.scopes) == 0 {
			r.scopes = slices.Clone(googleScopes)
		}
	case config.TypeCustom:
	default:
		return nil, fmt.Errorf("provider %s: unknown type %q (hint: microsoft, google or custom)", p.Name, p.Type)
	}
	if r.flow != config.FlowClientCredentials && r.kind != config.TypeCustom {
		for _, s := range oidcScopes {
			if !slices.Contains(r.scopes, s) {
				r.scopes = append(r.scopes, s)
			}
		}
	}
	if r.tokenURL == "" {
		return nil, fmt.Errorf("provider %s: token_url is not set (hint: set token_url for a custom provider)", p.Name)
	}
	return r, nil
}

// orDefault returns a unless it is empty, else b.
func orDefault(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// withClient makes x/oauth2 use client for the requests made with ctx.
func withClient(ctx context.Context, client *http.Client) context.Context {
	if client == nil {
		return ctx
	}
	return context.WithValue(ctx, oauth2.HTTPClient, client)
}

// credentialParams returns the client authentication parameters.
func (p *provider) credentialParams(ctx context.Context) (url.Values, error) {
	if p.cred == nil {
		return url.Values{}, nil
	}
	v, err := p.cred.TokenParams(ctx, p.clientID, p.tokenURL)
	if err != nil {
		return nil, fmt.Errorf("provider %s: preparing client credential: %w", p.name, err)
	}
	return v, nil
}

// tokenRequest posts one grant to the token endpoint with the provider's
// scopes and client authentication. It goes through x/oauth2's client
// credentials code, whose EndpointParams may replace grant_type: that gives
// refresh_token and device_code grants x/oauth2's request encoding, response
// parsing (RetrieveError, expiry) and its rule that a response without a
// refresh token keeps the one that was sent.
func (p *provider) tokenRequest(ctx context.Context, grant url.Values) (*oauth2.Token, error) {
	params, err := p.credentialParams(ctx)
	if err != nil {
		return nil, err
	}
	for k, v := range grant {
		params[k] = v
	}
	cc := clientcredentials.Config{
		ClientID:       p.clientID,
		TokenURL:       p.tokenURL,
		Scopes:         p.scopes,
		EndpointParams: params,
		AuthStyle:      oauth2.AuthStyleInParams,
	}
	return cc.Token(ctx)
}

// oauth2Config is the x/oauth2 view of the provider for the authorization
// code and device flows.
func (p *provider) oauth2Config(redirectURL string) *oauth2.Config {
	return &oauth2.Config{
		ClientID: p.clientID,
		Endpoint: oauth2.Endpoint{
			AuthURL:       p.authURL,
			TokenURL:      p.tokenURL,
			DeviceAuthURL: p.deviceURL,
			AuthStyle:     oauth2.AuthStyleInParams,
		},
		RedirectURL: redirectURL,
		Scopes:      p.scopes,
	}
}

// expiryOf returns when tok expires, assuming defaultLifetime when the
// provider did not say.
func expiryOf(tok *oauth2.Token, now time.Time) time.Time {
	if tok.Expiry.IsZero() {
		return now.Add(defaultLifetime)
	}
	return tok.Expiry
}
