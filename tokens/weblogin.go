package tokens

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/xoauthd/xoauthd/config"
)

// AuthCodeLogin is an authorization code login (PKCE, S256) whose redirect
// URI is served by the caller, such as the admin console, rather than by a
// loopback listener of its own. "xoauthd login" runs the same steps.
// Create one with NewAuthCodeLogin, send the browser to URL, hand what
// comes back to the redirect URI to Code, and redeem the code with Finish.
type AuthCodeLogin struct {
	p        *provider
	identity string
	redirect string // the redirect URI sent to the provider
	state    string // random; the redirect must bring it back
	verifier string // PKCE code verifier
}

// NewAuthCodeLogin prepares an authorization code login of identity with
// provider p that comes back to redirectURI. Client-credentials providers
// need none (ErrNoLoginNeeded).
func NewAuthCodeLogin(p *config.Provider, identity, redirectURI string) (*AuthCodeLogin, error) {
	rp, identity, err := interactiveProvider(p, identity)
	if err != nil {
		return nil, err
	}
	if rp.authURL == "" {
		return nil, fmt.Errorf("provider %s: auth_url is not set (hint: set auth_url, or use the device code)", rp.name)
	}
	return newAuthCodeLogin(rp, identity, redirectURI), nil
}

func newAuthCodeLogin(p *provider, identity, redirect string) *AuthCodeLogin {
	return &AuthCodeLogin{p: p, identity: identity, redirect: redirect, state: rand.Text(), verifier: oauth2.GenerateVerifier()}
}

// URL is the provider's sign-in address, with login_hint and
// prompt=select_account, where the browser goes next.
func (l *AuthCodeLogin) URL() string {
	return l.p.oauth2Config(l.redirect).AuthCodeURL(l.state, authOptions(l.p, l.identity, l.verifier)...)
}

// State is the state parameter the redirect must bring back. It is a
// secret of the login in progress: whoever knows it can complete it.
func (l *AuthCodeLogin) State() string { return l.state }

// Identity is the identity being logged in.
func (l *AuthCodeLogin) Identity() string { return l.identity }

// Code reads the query the browser brought back to the redirect URI: the
// authorization code, ErrStateMismatch for a state this login did not
// send, or the provider's refusal explained (a *NeedsLoginError and the
// like, as "xoauthd login" reports it).
func (l *AuthCodeLogin) Code(q url.Values) (string, error) {
	cb := redirectResult(q, l.state, l.p, l.identity)
	return cb.code, cb.err
}

// Finish redeems code and stores the tokens like Login: a token for another
// account than the identity is refused (*IdentityMismatchError) and leaves
// what is stored unchanged. client makes the requests (nil:
// http.DefaultClient).
func (l *AuthCodeLogin) Finish(ctx context.Context, store Backend, code string, client *http.Client) (*LoginResult, error) {
	ctx = withClient(ctx, client)
	tok, err := l.exchange(ctx, code)
	if err != nil {
		return nil, err
	}
	return saveLogin(store, l.p, l.identity, config.FlowAuthCode, tok, io.Discard)
}

// exchange redeems code with the PKCE verifier and the client's credential.
func (l *AuthCodeLogin) exchange(ctx context.Context, code string) (*oauth2.Token, error) {
	params, err := l.p.credentialParams(ctx)
	if err != nil {
		return nil, err
	}
	exOpts := []oauth2.AuthCodeOption{oauth2.VerifierOption(l.verifier)}
	for k := range params {
		exOpts = append(exOpts, oauth2.SetAuthURLParam(k, params.Get(k)))
	}
	tok, err := l.p.oauth2Config(l.redirect).Exchange(ctx, code, exOpts...)
	if err != nil {
		return nil, classify(err, l.identity, l.p.name, time.Now())
	}
	return tok, nil
}

// DeviceLogin is a device code login (RFC 8628) in progress, for a caller
// that shows the code itself (the admin console). "xoauthd login --device"
// runs the same steps.
type DeviceLogin struct {
	// UserCode is what the person types at VerificationURI.
	UserCode string
	// VerificationURI is where to sign in; VerificationURIComplete, when
	// the provider sends it, carries the code too.
	VerificationURI, VerificationURIComplete string
	// Expiry is when the code stops working.
	Expiry time.Time

	p        *provider
	identity string
	da       *oauth2.DeviceAuthResponse
	client   *http.Client
	unit     time.Duration // one second of the polling interval
}

// StartDeviceLogin asks the provider for a device code for identity. client
// makes the requests (nil: http.DefaultClient).
func StartDeviceLogin(ctx context.Context, p *config.Provider, identity string, client *http.Client) (*DeviceLogin, error) {
	rp, identity, err := interactiveProvider(p, identity)
	if err != nil {
		return nil, err
	}
	return startDevice(withClient(ctx, client), rp, identity, client, time.Second)
}

func startDevice(ctx context.Context, p *provider, identity string, client *http.Client, unit time.Duration) (*DeviceLogin, error) {
	if p.deviceURL == "" {
		return nil, fmt.Errorf("provider %s: device_url is not set (hint: set device_url, or sign in through the browser)", p.name)
	}
	da, err := p.oauth2Config("").DeviceAuth(ctx)
	if err != nil {
		return nil, classify(err, identity, p.name, time.Now())
	}
	expiry := da.Expiry
	if expiry.IsZero() {
		expiry = time.Now().Add(defaultDeviceLifetime)
	}
	return &DeviceLogin{UserCode: da.UserCode, VerificationURI: da.VerificationURI, VerificationURIComplete: da.VerificationURIComplete,
		Expiry: expiry, p: p, identity: identity, da: da, client: client, unit: unit}, nil
}

// Wait polls until the person has signed in, declined, or the code expired,
// and stores the tokens like Login (a token for another account is refused
// and leaves what is stored unchanged).
func (l *DeviceLogin) Wait(ctx context.Context, store Backend) (*LoginResult, error) {
	ctx = withClient(ctx, l.client)
	tok, err := pollDevice(ctx, l.p, l.identity, l.da, l.Expiry, l.unit, newProgress(io.Discard))
	if err != nil {
		return nil, err
	}
	return saveLogin(store, l.p, l.identity, config.FlowDevice, tok, io.Discard)
}

// interactiveProvider resolves p for an interactive login of identity.
func interactiveProvider(p *config.Provider, identity string) (*provider, string, error) {
	identity = strings.TrimSpace(identity)
	if identity == "" {
		return nil, "", errors.New("login needs an identity (the account's e-mail address)")
	}
	rp, err := resolveProvider(p)
	if err != nil {
		return nil, "", err
	}
	if rp.flow == config.FlowClientCredentials {
		return nil, "", fmt.Errorf("%s with provider %s: %w", identity, rp.name, ErrNoLoginNeeded)
	}
	return rp, identity, nil
}
