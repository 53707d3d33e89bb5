package tokens

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/xoauthd/xoauthd/config"
)

// ErrNoLoginNeeded is returned by Login for a client-credentials provider:
// the app authenticates by itself and there is nothing to store.
var ErrNoLoginNeeded = errors.New("the provider uses client credentials: no login is needed")

// LoginOptions control an interactive login.
type LoginOptions struct {
	// Device uses the device-code flow instead of the authorization code
	// flow (it is also used when the provider's flow is "device").
	Device bool
	// NoBrowser only prints the sign-in URL instead of also opening a browser.
	NoBrowser bool
	// Out receives the instructions and progress; nil discards them.
	Out io.Writer
	// OpenBrowser opens a URL in a browser; nil uses the platform's opener
	// (xdg-open, open, rundll32).
	OpenBrowser func(url string) error
	// HTTPClient makes the requests to the provider; nil: http.DefaultClient.
	HTTPClient *http.Client
	// pollUnit is how long one second of the device flow's polling
	// interval lasts; zero means a second. Tests shorten it.
	pollUnit time.Duration
}

// LoginResult describes what Login stored.
type LoginResult struct {
	Identity string
	User     string // the signed-in account from the id_token; "" when the provider sent none
	Provider string
	Flow     string // authcode or device
	Expiry   time.Time
	Scopes   []string
}

// Login runs the interactive flow for identity with provider p, checks that
// the account that signed in is identity, and stores its tokens, replacing
// whatever was stored for identity. On any error nothing is stored.
func Login(ctx context.Context, store Backend, p *config.Provider, identity string, opts LoginOptions) (*LoginResult, error) {
	rp, identity, err := interactiveProvider(p, identity)
	if err != nil {
		return nil, err
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	ctx = withClient(ctx, opts.HTTPClient)
	flow := config.FlowAuthCode
	var tok *oauth2.Token
	if opts.Device || rp.flow == config.FlowDevice {
		flow = config.FlowDevice
		tok, err = deviceFlow(ctx, rp, identity, opts)
	} else {
		tok, err = authCodeFlow(ctx, rp, identity, opts)
	}
	if err != nil {
		return nil, err
	}
	return saveLogin(store, rp, identity, flow, tok, opts.Out)
}

// saveLogin checks that tok is identity's and stores it, replacing what was
// stored for identity; on any error nothing is stored.
func saveLogin(store Backend, rp *provider, identity, flow string, tok *oauth2.Token, out io.Writer) (*LoginResult, error) {
	now := time.Now()
	user, err := checkSignedIn(tok, identity, out)
	if err != nil {
		return nil, err
	}
	if tok.RefreshToken == "" {
		return nil, &ConfigError{Identity: identity, Provider: rp.name,
			Meaning: "the provider returned no refresh token, so xoauthd could not renew access later",
			Fix:     "include offline_access in the scopes (Microsoft) or allow refresh tokens for this flow in the tenant"}
	}
	rec := record{
		Identity: identity, Provider: rp.name, Flow: flow, User: user, Scopes: grantedScopes(tok, rp.scopes),
		RefreshToken: tok.RefreshToken, AccessToken: tok.AccessToken, Expiry: tokenExpiry(tok, now),
		LoggedIn: now, LastRefresh: now,
	}
	err = store.modify(identity, func(r *record, _ bool) (bool, error) {
		*r = rec
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("saving the tokens of %s: %w", identity, err)
	}
	return &LoginResult{Identity: identity, User: user, Provider: rp.name, Flow: flow, Expiry: rec.Expiry, Scopes: rec.Scopes}, nil
}

// checkSignedIn compares the id_token's user with identity. Without an
// id_token (a custom provider without OpenID Connect) it warns on out.
func checkSignedIn(tok *oauth2.Token, identity string, out io.Writer) (string, error) {
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		fmt.Fprintf(out, "warning: the provider sent no id_token, so xoauthd cannot confirm that %s signed in\n", identity)
		return "", nil
	}
	claims, err := parseIDToken(raw)
	if err != nil {
		return "", fmt.Errorf("reading who signed in: %w; nothing was stored", err)
	}
	names := claims.names()
	if len(names) == 0 {
		return "", fmt.Errorf("the id_token names no user (no preferred_username, upn or email claim); nothing was stored (hint: add the openid, profile and email scopes)")
	}
	if !claims.matches(identity) {
		return "", &IdentityMismatchError{Identity: identity, SignedIn: names[0]}
	}
	for _, n := range names {
		if strings.EqualFold(n, identity) {
			return n, nil
		}
	}
	return names[0], nil
}

// grantedScopes returns the scopes the provider granted, else the requested ones.
func grantedScopes(tok *oauth2.Token, requested []string) []string {
	if s, ok := tok.Extra("scope").(string); ok && strings.TrimSpace(s) != "" {
		return strings.Fields(s)
	}
	return slices.Clone(requested)
}
