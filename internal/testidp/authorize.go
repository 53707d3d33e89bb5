package testidp

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// PKCE code challenge sizes (RFC 7636 §4.1, §4.2).
const (
	s256ChallengeLen = 43 // base64url of a SHA-256 digest, unpadded
	minPlainLen      = 43
	maxPlainLen      = 128
)

// authCode is an issued authorization code.
type authCode struct {
	clientID    string
	redirectURI string // normalised, see loopbackRedirect
	user        string
	scopes      scopeSet
	nonce       string
	challenge   string
	method      string // "S256" or "plain"; "" without PKCE
	expires     time.Time
	used        bool
}

// handleAuthorize serves GET (and POST) /{tenant}/oauth2/v2.0/authorize
// (RFC 6749 §4.1.1) with automatic consent.
func (p *IdP) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		writePage(w, p.pageError(errMalformed()))
		return
	}
	target, perr := p.authorize(r.PathValue("tenant"), r.Form)
	if perr != nil {
		p.log.Debug("authorize error page", "code", perr.Code)
		writePage(w, perr)
		return
	}
	p.log.Debug("authorize redirect", "client_id", r.Form.Get("client_id"), "error", mustQueryValue(target, "error"))
	http.Redirect(w, r, target, http.StatusFound)
}

// Authorize performs the sign-in and consent for an authorize URL of this
// IdP without a browser. It returns the redirect URL the browser would be
// sent to: with code and state on success, with error and
// error_description when Microsoft would redirect an error. Errors that
// Microsoft shows as a page are returned as *AuthorizeError.
func (p *IdP) Authorize(authURL string) (string, error) {
	u, err := url.Parse(authURL)
	if err != nil {
		return "", fmt.Errorf("parsing authorize URL: %w", err)
	}
	if !strings.EqualFold(u.Scheme+"://"+u.Host, p.authority) {
		return "", fmt.Errorf("authorize URL %s is not served by this identity provider (hint: set the authority to %s)", u.Redacted(), p.authority)
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 4 || parts[1] != "oauth2" || parts[2] != "v2.0" || parts[3] != "authorize" {
		return "", fmt.Errorf("authorize URL path %q is not /{tenant}/oauth2/v2.0/authorize", u.Path)
	}
	target, perr := p.authorize(parts[0], u.Query())
	if perr != nil {
		return "", perr
	}
	return target, nil
}

// authorize validates an authorization request and returns the redirect.
func (p *IdP) authorize(tenant string, q url.Values) (string, *AuthorizeError) {
	p.count("authorize")
	if _, ok := p.tenantKind(tenant); !ok {
		return "", p.pageError(errTenantNotFound(tenant))
	}
	clientID := q.Get("client_id")
	if clientID == "" {
		return "", p.pageError(errMissingParam("client_id"))
	}
	if _, ok := p.client(clientID); !ok {
		return "", p.pageError(errUnknownClient(clientID, p.opts.Tenant))
	}
	rawRedirect := q.Get("redirect_uri")
	if rawRedirect == "" {
		return "", p.pageError(errMissingParam("redirect_uri"))
	}
	redirect, ok := loopbackRedirect(rawRedirect)
	if !ok {
		return "", p.pageError(newError(400, "invalid_request", 50011, "The redirect URI '%s' specified in the request does not match the redirect URIs configured for the application '%s'. Make sure the redirect URI sent in the request matches one added to your application in the Azure portal. Navigate to https://aka.ms/redirectUriMismatchError to learn more about how to fix this.", rawRedirect, clientID))
	}
	state := q.Get("state")
	method, e := checkAuthRequest(q)
	if e != nil {
		return p.redirectError(redirect, state, e), nil
	}
	who, e, perr := p.signInUser(q)
	if perr != nil {
		return "", perr
	}
	if e != nil {
		return p.redirectError(redirect, state, e), nil
	}
	code := p.newCode(&authCode{
		clientID:    clientID,
		redirectURI: redirect.String(),
		user:        who,
		scopes:      parseScopes(q.Get("scope")),
		nonce:       q.Get("nonce"),
		challenge:   q.Get("code_challenge"),
		method:      method,
	})
	return redirectWith(redirect, url.Values{"code": {code}, "state": {state}, "session_state": {randomGUID()}}), nil
}

// checkAuthRequest checks response_type, scope and the PKCE parameters and
// returns the challenge method ("" without PKCE).
func checkAuthRequest(q url.Values) (string, *aadError) {
	switch rt := q.Get("response_type"); rt {
	case "code":
	case "":
		return "", errMissingParam("response_type")
	default:
		return "", newError(400, "unsupported_response_type", 700054, "response_type '%s' is not enabled for the application.", rt)
	}
	if strings.TrimSpace(q.Get("scope")) == "" {
		return "", errMissingParam("scope")
	}
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	if challenge == "" {
		if method != "" {
			return "", errMissingParam("code_challenge")
		}
		return "", nil
	}
	if method == "" {
		method = "plain" // RFC 7636 §4.3
	}
	badSize := newError(400, "invalid_request", 501491, "Invalid size of Code_Challenge parameter.")
	switch method {
	case "S256":
		if len(challenge) != s256ChallengeLen || !unreserved(challenge) {
			return "", badSize
		}
	case "plain":
		if len(challenge) < minPlainLen || len(challenge) > maxPlainLen || !unreserved(challenge) {
			return "", badSize
		}
	default:
		return "", newError(400, "invalid_request", 70011, "The provided value for the input parameter 'code_challenge_method' is not valid. Expected 'S256' or 'plain'.")
	}
	return method, nil
}

// signInUser picks the user the automatic sign-in signs in: the
// SetSignedInUser account, else the login_hint account. It returns either
// the user, an error to redirect, or an error page.
func (p *IdP) signInUser(q url.Values) (string, *aadError, *AuthorizeError) {
	p.mu.Lock()
	signedIn := p.signedIn
	hint := strings.ToLower(q.Get("login_hint"))
	known := hint != "" && p.knownUserLocked(hint)
	p.mu.Unlock()
	switch {
	case signedIn != "":
		return signedIn, nil, nil
	case q.Get("prompt") == "none":
		return "", newError(400, "login_required", 50058, "A silent sign-in request was sent but no user is signed in."), nil
	case hint == "":
		return "", nil, p.pageError(newError(400, "invalid_request", 50058, "No user is signed in and the request has no login_hint; the test identity provider signs in the SetSignedInUser account or the login_hint account."))
	case !known:
		return "", nil, p.pageError(newError(400, "invalid_request", 50034, "The user account {EmailHidden} does not exist in the '%s' directory. To sign into this application, the account must be added to the directory.", p.opts.Tenant))
	}
	return hint, nil, nil
}

func (p *IdP) newCode(c *authCode) string {
	code := opaqueToken("0.A")
	p.mu.Lock()
	defer p.mu.Unlock()
	c.expires = p.now().Add(p.opts.CodeLifetime)
	p.codes[code] = c
	return code
}

// redirectError renders e as the error redirect of RFC 6749 §4.1.2.1.
func (p *IdP) redirectError(redirect *url.URL, state string, e *aadError) string {
	id := ids{trace: randomGUID(), correlation: randomGUID(), at: p.now().UTC()}
	return redirectWith(redirect, url.Values{"error": {e.err}, "error_description": {e.description(id)}, "state": {state}})
}

// redirectWith adds the non-empty params to the redirect URI's query.
func redirectWith(redirect *url.URL, params url.Values) string {
	u := *redirect
	q := u.Query()
	for k, v := range params {
		if len(v) > 0 && v[0] != "" {
			q[k] = v
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// loopbackRedirect accepts the redirect URIs of a native app registered
// with http://localhost (RFC 8252 §7.3): http on localhost or 127.0.0.1, any
// port, any path. A missing path becomes "/", as Microsoft appends it. It
// returns the normalised URI.
func loopbackRedirect(raw string) (*url.URL, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.User != nil || u.Opaque != "" || u.Fragment != "" {
		return nil, false
	}
	host := u.Hostname()
	if !strings.EqualFold(host, "localhost") && host != "127.0.0.1" {
		return nil, false
	}
	if port := u.Port(); port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return nil, false
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return nil, false
	}
	if u.Path == "" {
		u.Path = "/"
	}
	return u, true
}

// unreserved reports whether s uses only RFC 3986 unreserved characters,
// the alphabet of PKCE verifiers and challenges.
func unreserved(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// tenantKind reports whether a tenant path segment is served and whether
// it is a multi-tenant alias.
func (p *IdP) tenantKind(tenant string) (alias, ok bool) {
	switch t := strings.ToLower(tenant); t {
	case "common", "organizations", "consumers":
		return true, true
	case p.opts.Tenant, p.tenantID:
		return false, true
	}
	return false, false
}

func (p *IdP) client(id string) (Client, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.clients[id]
	return c, ok
}

// mustQueryValue returns one query parameter of a URL this package built.
func mustQueryValue(raw, key string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Query().Get(key)
}

// Browser returns an OpenBrowser function for a sign-in (tokens'
// LoginOptions) that plays the user's browser: it signs in through
// authorize (an IdP's or a Recorder's Authorize) and follows the redirect
// to the login's local callback.
func Browser(authorize func(authURL string) (string, error)) func(authURL string) error {
	return func(authURL string) error {
		redirect, err := authorize(authURL)
		if err != nil {
			return err
		}
		resp, err := http.Get(redirect)
		if err != nil {
			return fmt.Errorf("following the sign-in redirect: %w", err)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		return resp.Body.Close()
	}
}
