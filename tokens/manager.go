package tokens

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/xoauthd/xoauthd/config"
)

// Defaults of Options.
const (
	// DefaultMargin: refresh when less than this is left of an access token,
	// so an upstream session starts with most of a token's life (Exchange
	// ends IMAP sessions when the login token expires).
	DefaultMargin = 10 * time.Minute
	// DefaultRequestTimeout bounds one request to the identity provider.
	DefaultRequestTimeout = 30 * time.Second
	// DefaultBackoffMin and DefaultBackoffMax bound the pause after a failed
	// refresh before the provider is asked again for that identity.
	DefaultBackoffMin = 2 * time.Second
	DefaultBackoffMax = 5 * time.Minute
	// minValidity: a cached token with less left than this is not handed out
	// even during an outage.
	minValidity = 30 * time.Second
)

// Options tune a Manager. Zero values take the defaults above.
type Options struct {
	Margin         time.Duration // refresh when less than this remains
	RequestTimeout time.Duration // per request to the provider, independent of the caller
	BackoffMin     time.Duration // first pause after a failure (doubles up to BackoffMax)
	BackoffMax     time.Duration
	HTTPClient     *http.Client     // nil: http.DefaultClient
	Logger         *slog.Logger     // nil: discard
	Now            func() time.Time // nil: time.Now; tests move the clock
	// RefreshLockTTL is how long a replica holds an identity's refresh
	// lock in a shared store (Redis); zero: RequestTimeout plus 5s.
	RefreshLockTTL time.Duration
	// OnRefresh, when set, is called after every request to the identity
	// provider for an identity's access token with RefreshSuccess,
	// RefreshNeedsLogin or RefreshError, and the new expiry on success (the
	// metrics count it). It must not block.
	OnRefresh func(identity, result string, expiry time.Time)
}

// Results passed to Options.OnRefresh.
const (
	RefreshSuccess    = "success"     // a new access token
	RefreshNeedsLogin = "needs_login" // the refresh token was refused: a person must log in
	RefreshError      = "error"       // the provider was unreachable or refused the configuration
)

// reportRefresh passes the outcome of one request to the provider to
// Options.OnRefresh.
func (m *Manager) reportRefresh(identity string, err error, expiry time.Time) {
	if m.opts.OnRefresh == nil {
		return
	}
	result := RefreshSuccess
	switch {
	case errors.Is(err, ErrNeedsLogin):
		result = RefreshNeedsLogin
	case err != nil:
		result = RefreshError
	}
	m.opts.OnRefresh(identity, result, expiry)
}

// Manager hands out access tokens per identity: from the store while they
// have more than Margin left, else refreshed, with at most one request per
// identity in flight. It implements proxy.TokenSource. Safe for concurrent use.
type Manager struct {
	store     Backend
	providers func(identity string) (*config.Provider, error)
	opts      Options
	log       *slog.Logger

	mu  sync.Mutex
	ids map[string]*idState // by flight key; entries are never removed
}

// idState is the in-memory state of one identity (or one client-credentials
// app). All fields are guarded by Manager.mu.
type idState struct {
	flight    *flight   // the request in progress, nil when none
	failUntil time.Time // no request before this (back-off)
	failErr   error     // the failure that started the back-off
	failKey   string    // the refresh token that failed; a new login ends the back-off
	failures  int       // consecutive failures of failKey
	app       *appToken // client credentials: the cached token
}

// flight is one coalesced request; tok and err are set before done closes.
type flight struct {
	done chan struct{}
	tok  string
	err  error
}

// appToken is a cached client-credentials access token.
type appToken struct {
	token  string
	expiry time.Time
}

// NewManager returns a Manager over store (the file *Store or a *RedisStore). providers returns the provider
// configuration of an identity (it reads the live configuration, so a reload
// takes effect on the next refresh).
func NewManager(store Backend, providers func(identity string) (*config.Provider, error), opts Options) *Manager {
	if opts.Margin <= 0 {
		opts.Margin = DefaultMargin
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	if opts.BackoffMin <= 0 {
		opts.BackoffMin = DefaultBackoffMin
	}
	if opts.BackoffMax < opts.BackoffMin {
		opts.BackoffMax = max(DefaultBackoffMax, opts.BackoffMin)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{store: store, providers: providers, opts: opts, log: log, ids: map[string]*idState{}}
}

// Token returns an access token for identity with more than the margin left,
// refreshing it when needed. Errors match ErrNeedsLogin, ErrTemporary or
// ErrConfiguration, or are local (store, configuration lookup).
func (m *Manager) Token(ctx context.Context, identity string) (string, error) {
	return m.token(ctx, identity, "")
}

// Refresh returns a new access token after an upstream rejected stale. When
// the cached token already differs from stale (someone refreshed meanwhile)
// that one is returned without asking the provider.
func (m *Manager) Refresh(ctx context.Context, identity, stale string) (string, error) {
	if stale == "" {
		return "", errors.New("refresh needs the rejected token")
	}
	return m.token(ctx, identity, stale)
}

func (m *Manager) token(ctx context.Context, identity, stale string) (string, error) {
	p, err := m.provider(identity)
	if err != nil {
		return "", err
	}
	if p.flow == config.FlowClientCredentials {
		return m.coalesceRetry(ctx, appKey(p), stale, m.appFetch(identity, p, stale))
	}
	rec, ok, err := m.store.get(identity)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", notLoggedIn(identity)
	}
	if rec.Provider != "" && p.name != "" && rec.Provider != p.name {
		return "", &NeedsLoginError{Identity: identity,
			Meaning: fmt.Sprintf("the stored token of %s comes from provider %s, but its account uses provider %s", identity, rec.Provider, p.name),
			Fix:     loginCommand(identity + " --provider " + p.name)}
	}
	if m.usable(rec) && rec.AccessToken != stale {
		return rec.AccessToken, nil
	}
	if err := storedFailure(rec); err != nil {
		return "", err
	}
	return m.coalesceRetry(ctx, "id\x00"+storeKey(identity), stale, m.refreshFetch(identity, p, stale))
}

// provider resolves identity's provider.
func (m *Manager) provider(identity string) (*provider, error) {
	cp, err := m.providers(identity)
	if err != nil {
		return nil, fmt.Errorf("finding the provider of %s: %w", identity, err)
	}
	return resolveProvider(cp)
}

// appKey is the flight key of a client-credentials app: every mailbox
// served by the same app shares one token.
func appKey(p *provider) string {
	return "app\x00" + p.name + "\x00" + p.clientID + "\x00" + p.tokenURL
}

func notLoggedIn(identity string) error {
	return &NeedsLoginError{Identity: identity, Meaning: "no token stored for " + identity, Fix: loginCommand(identity)}
}

// storedFailure returns the needs-login error recorded for rec's refresh
// token, so a dead refresh token is not sent again and again.
func storedFailure(rec record) error {
	le := rec.LastError
	if le == nil || le.Class != classNeedsLogin.String() {
		return nil
	}
	return &NeedsLoginError{Identity: rec.Identity, Code: le.Code, Meaning: le.Meaning, Fix: loginCommand(rec.Identity)}
}

// usable reports whether rec's access token has more than the margin left.
func (m *Manager) usable(rec record) bool {
	return rec.AccessToken != "" && m.opts.Now().Add(m.opts.Margin).Before(rec.Expiry)
}

// stillValid reports whether a token expiring at expiry can be used at all.
func (m *Manager) stillValid(token string, expiry time.Time) bool {
	return token != "" && m.opts.Now().Add(minValidity).Before(expiry)
}

// coalesceRetry runs fetch coalesced under key. A forced refresh (stale set)
// that joined a flight which only confirmed stale runs once more.
func (m *Manager) coalesceRetry(ctx context.Context, key, stale string, fetch func(context.Context) (string, error)) (string, error) {
	tok, err := m.coalesce(ctx, key, fetch)
	if err == nil && stale != "" && tok == stale {
		tok, err = m.coalesce(ctx, key, fetch)
	}
	return tok, err
}

// coalesce runs fetch for key unless a run is already in flight, in which
// case it waits for that one. fetch runs on a context detached from the
// caller's (bounded by RequestTimeout), so an impatient caller leaving does
// not waste a refresh that others wait for.
func (m *Manager) coalesce(ctx context.Context, key string, fetch func(context.Context) (string, error)) (string, error) {
	m.mu.Lock()
	st := m.stateLocked(key)
	f := st.flight
	if f == nil {
		f = &flight{done: make(chan struct{})}
		st.flight = f
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.flightTimeout())
		go func() {
			defer cancel()
			f.tok, f.err = fetch(rctx)
			m.mu.Lock()
			st.flight = nil
			m.mu.Unlock()
			close(f.done)
		}()
	}
	m.mu.Unlock()
	select {
	case <-f.done:
		return f.tok, f.err
	case <-ctx.Done():
		return "", fmt.Errorf("waiting for a token: %w", ctx.Err())
	}
}

func (m *Manager) stateLocked(key string) *idState {
	st := m.ids[key]
	if st == nil {
		st = &idState{}
		m.ids[key] = st
	}
	return st
}

// refreshFetch is the coalesced refresh of a user identity.
func (m *Manager) refreshFetch(identity string, p *provider, stale string) func(context.Context) (string, error) {
	key := "id\x00" + storeKey(identity)
	return func(ctx context.Context) (string, error) {
		// Re-check: the flight before this one, or another process, may
		// have refreshed already.
		rec, ok, err := m.store.get(identity)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", notLoggedIn(identity)
		}
		if m.usable(rec) && rec.AccessToken != stale {
			return rec.AccessToken, nil
		}
		if err := storedFailure(rec); err != nil {
			return "", err
		}
		if err := m.backoff(key, rec.RefreshToken); err != nil {
			return m.cachedOr(rec.AccessToken, rec.Expiry, stale, err)
		}
		if l, ok := m.store.(refreshLocker); ok {
			cur, release, tok, err := m.clusterTurn(ctx, l, rec, stale)
			if release == nil {
				return tok, err
			}
			defer release()
			rec = cur
		}
		ctx, cancel := context.WithTimeout(ctx, m.opts.RequestTimeout)
		defer cancel()
		tok, err := p.tokenRequest(withClient(ctx, m.opts.HTTPClient), url.Values{
			"grant_type":    {"refresh_token"},
			"refresh_token": {rec.RefreshToken},
		})
		if err != nil {
			return m.refreshFailed(key, p, rec, stale, err)
		}
		return m.refreshSucceeded(key, rec, tok)
	}
}

// refreshSucceeded persists the rotated refresh token, then hands out the
// new access token.
func (m *Manager) refreshSucceeded(key string, old record, tok *oauth2.Token) (string, error) {
	now := m.opts.Now()
	expiry := tokenExpiry(tok, now)
	var newer *record // stored by a login or another process meanwhile
	err := m.store.modify(old.Identity, func(r *record, exists bool) (bool, error) {
		if !exists {
			return false, &NeedsLoginError{Identity: old.Identity,
				Meaning: old.Identity + " was logged out while its token was being refreshed", Fix: loginCommand(old.Identity)}
		}
		if r.RefreshToken != old.RefreshToken {
			// A login or another process replaced the token meanwhile:
			// what is stored is at least as new; keep it.
			newer = r
			return false, nil
		}
		if tok.RefreshToken != "" {
			r.RefreshToken = tok.RefreshToken
		}
		if s, ok := tok.Extra("scope").(string); ok && s != "" {
			r.Scopes = strings.Fields(s)
		}
		r.AccessToken, r.Expiry, r.LastRefresh, r.LastError = tok.AccessToken, expiry, now, nil
		return true, nil
	})
	if err != nil {
		m.log.Error("saving a refreshed token failed", "identity", old.Identity, "err", err)
		m.reportRefresh(old.Identity, err, time.Time{})
		return "", fmt.Errorf("saving the refreshed token of %s: %w", old.Identity, err)
	}
	m.clearBackoff(key)
	m.reportRefresh(old.Identity, nil, expiry)
	if newer != nil && m.stillValid(newer.AccessToken, newer.Expiry) {
		// No process goes on with a token older than the stored one.
		m.log.Info("token refreshed, but a newer one was stored meanwhile; using that", "identity", old.Identity)
		return newer.AccessToken, nil
	}
	m.log.Info("token refreshed", "identity", old.Identity, "expires", expiry.Format(time.RFC3339))
	return tok.AccessToken, nil
}

// refreshFailed classifies a failed refresh, starts the back-off, records
// the error in the store (tokens untouched) and, for a temporary failure,
// falls back on the cached access token while it is valid.
func (m *Manager) refreshFailed(key string, p *provider, rec record, stale string, err error) (string, error) {
	now := m.opts.Now()
	cerr := classify(err, rec.Identity, p.name, now)
	m.reportRefresh(rec.Identity, cerr, time.Time{})
	m.noteFailure(key, rec.RefreshToken, cerr)
	le := lastErrorOf(cerr, now)
	m.log.Warn("token refresh failed", "identity", rec.Identity, "class", le.Class, "code", le.Code, "err", cerr.Error())
	werr := m.store.modify(rec.Identity, func(r *record, exists bool) (bool, error) {
		if !exists || r.RefreshToken != rec.RefreshToken {
			return false, nil
		}
		r.LastError = le
		return true, nil
	})
	if werr != nil {
		m.log.Error("recording a refresh failure in the store failed", "identity", rec.Identity, "err", werr)
	}
	return m.cachedOr(rec.AccessToken, rec.Expiry, stale, cerr)
}

// cachedOr returns the cached token instead of a temporary error while it is
// still valid (and was not just rejected upstream).
func (m *Manager) cachedOr(token string, expiry time.Time, stale string, err error) (string, error) {
	if IsTemporary(err) && token != stale && m.stillValid(token, expiry) {
		return token, nil
	}
	return "", err
}

// lastErrorOf is how a classified error is remembered in the store.
func lastErrorOf(err error, now time.Time) *lastError {
	le := &lastError{Class: classConfiguration.String(), Message: err.Error(), At: now}
	var (
		nl *NeedsLoginError
		te *TemporaryError
		ce *ConfigError
	)
	switch {
	case errors.As(err, &nl):
		le.Class, le.Code, le.Meaning = classNeedsLogin.String(), nl.Code, nl.Meaning
	case errors.As(err, &te):
		le.Class, le.Code, le.Meaning = classTemporary.String(), te.Code, te.Meaning
	case errors.As(err, &ce):
		le.Code, le.Meaning = ce.Code, ce.Meaning
	}
	return le
}

// noteFailure starts or extends the back-off of key: doubling from
// BackoffMin to BackoffMax, and never before a Retry-After.
func (m *Manager) noteFailure(key, failKey string, err error) {
	now := m.opts.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.stateLocked(key)
	if st.failKey != failKey {
		st.failures = 0
	}
	st.failures++
	wait := m.opts.BackoffMax
	if st.failures < 30 {
		wait = min(m.opts.BackoffMin<<(st.failures-1), m.opts.BackoffMax)
	}
	until := now.Add(wait)
	var te *TemporaryError
	if errors.As(err, &te) && te.RetryAt.After(until) {
		until = te.RetryAt
	}
	st.failUntil, st.failErr, st.failKey = until, err, failKey
}

// backoff returns the error to fail fast with while key is backing off from
// a failure of failKey, nil when a request may go out.
func (m *Manager) backoff(key, failKey string) error {
	now := m.opts.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.stateLocked(key)
	if st.failErr == nil || st.failKey != failKey || !now.Before(st.failUntil) {
		return nil
	}
	var te *TemporaryError
	if errors.As(st.failErr, &te) {
		c := *te
		c.RetryAt = st.failUntil
		return &c
	}
	return st.failErr
}

func (m *Manager) clearBackoff(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.stateLocked(key)
	st.failErr, st.failUntil, st.failures, st.failKey = nil, time.Time{}, 0, ""
}

// appFetch is the coalesced client-credentials request of an app.
func (m *Manager) appFetch(identity string, p *provider, stale string) func(context.Context) (string, error) {
	key := appKey(p)
	return func(ctx context.Context) (string, error) {
		m.mu.Lock()
		cached := m.stateLocked(key).app
		m.mu.Unlock()
		var tok0 string
		var exp0 time.Time
		if cached != nil {
			tok0, exp0 = cached.token, cached.expiry
			if tok0 != stale && m.opts.Now().Add(m.opts.Margin).Before(exp0) {
				return tok0, nil
			}
		}
		if err := m.backoff(key, ""); err != nil {
			return m.cachedOr(tok0, exp0, stale, err)
		}
		tok, err := p.tokenRequest(withClient(ctx, m.opts.HTTPClient), url.Values{"grant_type": {"client_credentials"}})
		now := m.opts.Now()
		if err != nil {
			cerr := classify(err, identity, p.name, now)
			m.reportRefresh(identity, cerr, time.Time{})
			m.noteFailure(key, "", cerr)
			m.log.Warn("client credentials request failed", "identity", identity, "provider", p.name, "err", cerr.Error())
			return m.cachedOr(tok0, exp0, stale, cerr)
		}
		m.clearBackoff(key)
		m.mu.Lock()
		m.stateLocked(key).app = &appToken{token: tok.AccessToken, expiry: tokenExpiry(tok, now)}
		m.mu.Unlock()
		m.reportRefresh(identity, nil, tokenExpiry(tok, now))
		return tok.AccessToken, nil
	}
}

// tokenExpiry computes the expiry from the response's expires_in on the
// Manager's clock (x/oauth2 uses the wall clock), else from tok.Expiry.
func tokenExpiry(tok *oauth2.Token, now time.Time) time.Time {
	var secs float64
	switch v := tok.Extra("expires_in").(type) {
	case float64:
		secs = v
	case int64:
		secs = float64(v)
	case string:
		secs, _ = strconv.ParseFloat(v, 64)
	}
	if secs > 0 {
		return now.Add(time.Duration(secs * float64(time.Second)))
	}
	return expiryOf(tok, now)
}
