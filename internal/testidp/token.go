package testidp

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Grant types of the token endpoint.
const (
	grantAuthCode     = "authorization_code"
	grantRefresh      = "refresh_token"
	grantDeviceCode   = "urn:ietf:params:oauth:grant-type:device_code"
	grantClientCreds  = "client_credentials"
	deviceCodeCounter = "devicecode"
)

// refreshGrant is what a refresh token stands for.
type refreshGrant struct {
	clientID    string
	user        string
	scopes      scopeSet // the consented scopes of the original sign-in
	issued      time.Time
	revokeEpoch int
	mfaEpoch    int
}

// tokenBody is a successful token response (RFC 6749 §5.1 plus Microsoft's
// ext_expires_in).
type tokenBody struct {
	TokenType    string `json:"token_type"`
	Scope        string `json:"scope,omitempty"`
	ExpiresIn    int64  `json:"expires_in"`
	ExtExpiresIn int64  `json:"ext_expires_in"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token,omitempty"`
	IDToken      string `json:"id_token,omitempty"`
}

// readForm reads a POST form body of at most maxFormBytes. It answers the
// error itself and returns nil then.
func (p *IdP) readForm(w http.ResponseWriter, r *http.Request) url.Values {
	if r.Method != http.MethodPost {
		p.writeError(w, r, errPostOnly(r.Method))
		return nil
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		p.writeError(w, r, errMalformed())
		return nil
	}
	return r.PostForm
}

// handleToken serves POST /{tenant}/oauth2/v2.0/token (RFC 6749 §3.2).
func (p *IdP) handleToken(w http.ResponseWriter, r *http.Request) {
	form := p.readForm(w, r)
	if form == nil {
		return
	}
	grant := form.Get("grant_type")
	p.count(grant)
	p.holdRequest(form)
	if p.injectFailure(w, r) {
		return
	}
	tenant := r.PathValue("tenant")
	alias, ok := p.tenantKind(tenant)
	if !ok {
		p.writeError(w, r, errTenantNotFound(tenant))
		return
	}
	if grant == "" {
		p.writeError(w, r, errMissingParam("grant_type"))
		return
	}
	c, e := p.authenticateClient(r, form, grant)
	if e != nil {
		p.writeError(w, r, e)
		return
	}
	var body *tokenBody
	switch grant {
	case grantAuthCode:
		body, e = p.redeemCode(c, form)
	case grantRefresh:
		body, e = p.redeemRefresh(c, form)
	case grantDeviceCode:
		body, e = p.redeemDevice(c, form)
	case grantClientCreds:
		body, e = p.clientCredentials(c, form, tenant, alias)
	default:
		e = errUnsupportedGrant(grant)
	}
	if e != nil {
		p.writeError(w, r, e)
		return
	}
	p.log.Debug("token issued", "grant_type", grant, "client_id", c.ID)
	writeJSON(w, http.StatusOK, body)
}

// authenticateClient identifies the client by the client_id form field or
// HTTP Basic (RFC 6749 §2.3.1: both parts form-encoded) and checks its
// secret or its client assertion (assertion.go).
func (p *IdP) authenticateClient(r *http.Request, form url.Values, grant string) (Client, *aadError) {
	id, secret := form.Get("client_id"), form.Get("client_secret")
	assertion := form.Has("client_assertion") || form.Has("client_assertion_type")
	if u, pw, ok := r.BasicAuth(); ok {
		if id == "" {
			id = formUnescape(u)
		}
		if pw := formUnescape(pw); pw != "" {
			secret = pw
		}
	}
	if id == "" {
		return Client{}, errMissingParam("client_id")
	}
	c, ok := p.client(id)
	switch {
	case !ok:
		return Client{}, errUnknownClient(id, p.opts.Tenant)
	case c.Public && assertion:
		return Client{}, errPublicClientSecret()
	case assertion && secret == "":
		if e := p.verifyAssertion(c, r.PathValue("tenant"), form); e != nil {
			return Client{}, e
		}
		return c, nil
	case c.Public && secret != "":
		return Client{}, errPublicClientSecret()
	case c.Public && grant == grantClientCreds, !c.Public && secret == "":
		return Client{}, errSecretRequired()
	case !c.Public && subtle.ConstantTimeCompare([]byte(secret), []byte(c.Secret)) != 1:
		return Client{}, errBadSecret(id)
	}
	return c, nil
}

func formUnescape(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

// redeemCode is the authorization code grant (RFC 6749 §4.1.3, RFC 7636 §4.6).
// A code is spent only by a successful redemption.
func (p *IdP) redeemCode(c Client, form url.Values) (*tokenBody, *aadError) {
	code, redirect := form.Get("code"), form.Get("redirect_uri")
	if code == "" {
		return nil, errMissingParam("code")
	}
	if redirect == "" {
		return nil, errMissingParam("redirect_uri")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ac := p.codes[code]
	now := p.now()
	switch {
	case ac == nil:
		return nil, errUnknownGrant()
	case ac.used:
		return nil, errCodeRedeemed()
	case !now.Before(ac.expires):
		return nil, errCodeExpired()
	case ac.clientID != c.ID:
		return nil, errGrantInvalid("The code was issued to another client.")
	}
	if u, ok := loopbackRedirect(redirect); !ok || u.String() != ac.redirectURI {
		return nil, errRedirectMismatchAtToken(redirect)
	}
	if ac.method != "" && !verifierMatches(ac.method, ac.challenge, form.Get("code_verifier")) {
		return nil, errVerifierMismatch()
	}
	ac.used = true
	return p.issueLocked(tokenGrant{clientID: c.ID, user: ac.user, scopes: ac.scopes, nonce: ac.nonce}, now, ac.scopes.offline), nil
}

// verifierMatches checks a code_verifier against the challenge (RFC 7636 §4.6).
func verifierMatches(method, challenge, verifier string) bool {
	if len(verifier) < minPlainLen || len(verifier) > maxPlainLen || !unreserved(verifier) {
		return false
	}
	want := verifier
	if method == "S256" {
		sum := sha256.Sum256([]byte(verifier))
		want = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	return subtle.ConstantTimeCompare([]byte(want), []byte(challenge)) == 1
}

// redeemRefresh is the refresh token grant (RFC 6749 §6). Every use
// returns a new refresh token; the used one stays valid, as Microsoft does.
func (p *IdP) redeemRefresh(c Client, form url.Values) (*tokenBody, *aadError) {
	rt := form.Get("refresh_token")
	if rt == "" {
		return nil, errMissingParam("refresh_token")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	g := p.refresh[rt]
	if g == nil {
		return nil, errUnknownGrant()
	}
	if g.clientID != c.ID {
		return nil, errGrantInvalid("The refresh token was issued to another client.")
	}
	u := p.userLocked(g.user)
	if g.revokeEpoch != u.revokeEpoch {
		return nil, errRefreshInactive(g.issued)
	}
	scopes := g.scopes
	if s := form.Get("scope"); strings.TrimSpace(s) != "" {
		scopes = parseScopes(s)
	}
	if g.mfaEpoch != u.mfaEpoch {
		return nil, errMFARequired(scopes.audience())
	}
	now := p.now()
	body := p.issueLocked(tokenGrant{clientID: c.ID, user: g.user, scopes: scopes}, now, false)
	body.RefreshToken = p.newRefreshGrantLocked(&refreshGrant{
		clientID: c.ID, user: g.user, scopes: g.scopes, issued: now,
		revokeEpoch: g.revokeEpoch, mfaEpoch: g.mfaEpoch,
	})
	return body, nil
}

// clientCredentials is the client credentials grant (RFC 6749 §4.4):
// tenant-specific endpoint, a secret, and a single "{resource}/.default" scope.
func (p *IdP) clientCredentials(c Client, form url.Values, tenant string, alias bool) (*tokenBody, *aadError) {
	if alias {
		if strings.EqualFold(tenant, "organizations") {
			return nil, errNoTenantInfo()
		}
		return nil, errGrantNotOnCommon()
	}
	scope := strings.TrimSpace(form.Get("scope"))
	if scope == "" {
		return nil, errMissingParam("scope")
	}
	if strings.ContainsAny(scope, " \t") || !strings.HasSuffix(scope, "/.default") {
		return nil, errScopeNotDefault(scope)
	}
	scopes := parseScopes(scope)
	p.mu.Lock()
	defer p.mu.Unlock()
	body := p.issueLocked(tokenGrant{clientID: c.ID, scopes: scopes}, p.now(), false)
	body.Scope = ""
	return body, nil
}

// issueLocked builds a token response: an access token, an id token when
// openid was asked for and a user is present, and a new refresh token when
// withRefresh. p.mu must be held.
func (p *IdP) issueLocked(g tokenGrant, now time.Time, withRefresh bool) *tokenBody {
	ttl := p.atLifetime
	body := &tokenBody{
		TokenType:    "Bearer",
		Scope:        g.scopes.responseScope(),
		ExpiresIn:    lifetimeSeconds(ttl),
		ExtExpiresIn: lifetimeSeconds(ttl),
		AccessToken:  p.accessToken(g, now, ttl),
	}
	if g.user != "" && g.scopes.openid {
		body.IDToken = p.idToken(g, now)
	}
	if withRefresh && g.user != "" {
		body.RefreshToken = p.newRefreshLocked(g.clientID, p.userLocked(g.user), g.scopes, now)
	}
	return body
}

// newRefreshLocked issues a refresh token valid for the user's current
// epochs. p.mu must be held.
func (p *IdP) newRefreshLocked(clientID string, u *user, scopes scopeSet, now time.Time) string {
	return p.newRefreshGrantLocked(&refreshGrant{
		clientID: clientID, user: u.email, scopes: scopes, issued: now,
		revokeEpoch: u.revokeEpoch, mfaEpoch: u.mfaEpoch,
	})
}

func (p *IdP) newRefreshGrantLocked(g *refreshGrant) string {
	rt := opaqueToken("0.A")
	p.refresh[rt] = g
	return rt
}

// injectFailure applies a FailWith failure and reports whether it answered.
func (p *IdP) injectFailure(w http.ResponseWriter, r *http.Request) bool {
	p.mu.Lock()
	if p.failure == nil {
		p.mu.Unlock()
		return false
	}
	f := *p.failure
	if p.failure.Count > 0 {
		p.failure.Count--
		if p.failure.Count == 0 {
			p.failure = nil
		}
	}
	p.mu.Unlock()
	if f.Hang {
		select {
		case <-r.Context().Done():
		case <-p.done:
		}
		// Drop the connection without an answer, as a dead server would;
		// net/http recovers this sentinel silently.
		panic(http.ErrAbortHandler)
	}
	status := f.Status
	if status == 0 {
		status = http.StatusInternalServerError
		if f.MalformedJSON {
			status = http.StatusOK
		}
	}
	if f.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(f.RetryAfter.Seconds())), 10))
	}
	if f.MalformedJSON {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"token_type":"Bearer","scope":"https://outlook.office.com/IMAP.AccessAsUser.All","expires_in":`))
		return true
	}
	p.writeError(w, r, failureError(status))
	return true
}
