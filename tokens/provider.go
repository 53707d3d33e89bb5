package tokens

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/xoauthd/xoauthd/config"
)

// defaultLifetime is assumed when a token response has no expires_in.
const defaultLifetime = 30 * time.Minute

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

// resolveProvider returns p with every endpoint and scope resolved from
// its type's preset (config.Provider.Resolved: package config owns the
// presets).
func resolveProvider(p *config.Provider) (*provider, error) {
	if p == nil {
		return nil, fmt.Errorf("no provider")
	}
	rp := p.Resolved()
	switch rp.Type {
	case config.TypeMicrosoft, config.TypeGoogle, config.TypeCustom:
	default:
		return nil, fmt.Errorf("provider %s: unknown type %q (hint: microsoft, google or custom)", p.Name, p.Type)
	}
	if rp.TokenURL == "" {
		return nil, fmt.Errorf("provider %s: token_url is not set (hint: set token_url for a custom provider)", p.Name)
	}
	return &provider{
		name: rp.Name, kind: rp.Type, flow: rp.Flow, clientID: rp.ClientID, cred: CredentialFor(rp),
		authURL: rp.AuthURL, tokenURL: rp.TokenURL, deviceURL: rp.DeviceURL, scopes: rp.Scopes,
	}, nil
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
