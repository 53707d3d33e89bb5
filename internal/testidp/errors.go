package testidp

import (
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"strconv"
	"time"
)

// timestampLayout is how Microsoft prints error timestamps ("2016-01-09 02:02:12Z").
const timestampLayout = "2006-01-02 15:04:05Z"

// aadError is one Microsoft identity platform error before it is rendered.
type aadError struct {
	status   int    // HTTP status of a token-endpoint answer
	err      string // OAuth error code (RFC 6749 §5.2)
	code     int    // AADSTS number
	text     string // message after "AADSTSnnnnn: "
	suberror string // Microsoft suberror, e.g. basic_action
}

// errorBody is the JSON error document of the token and devicecode endpoints.
type errorBody struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
	ErrorCodes       []int  `json:"error_codes"`
	Timestamp        string `json:"timestamp"`
	TraceID          string `json:"trace_id"`
	CorrelationID    string `json:"correlation_id"`
	ErrorURI         string `json:"error_uri"`
	Suberror         string `json:"suberror,omitempty"`
}

func newError(status int, oauthErr string, code int, format string, args ...any) *aadError {
	return &aadError{status: status, err: oauthErr, code: code, text: fmt.Sprintf(format, args...)}
}

// headline is "AADSTSnnnnn: text".
func (e *aadError) headline() string {
	return "AADSTS" + strconv.Itoa(e.code) + ": " + e.text
}

// The catalogue. Texts follow Microsoft's messages; the numbers are from
// Microsoft's error reference.

func errMissingParam(name string) *aadError {
	return newError(400, "invalid_request", 900144, "The request body must contain the following parameter: '%s'.", name)
}

func errMalformed() *aadError {
	return newError(400, "invalid_request", 9002313, "Invalid request. Request is malformed or invalid.")
}

// errUnknownGrant answers a code or refresh token the IdP never issued.
func errUnknownGrant() *aadError {
	return newError(400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.")
}

func errPostOnly(method string) *aadError {
	return newError(400, "invalid_request", 900561, "The endpoint only accepts POST requests. Received a %s request.", method)
}

func errTenantNotFound(tenant string) *aadError {
	return newError(400, "invalid_tenant", 90002, "Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.", tenant)
}

func errUnknownClient(id, tenant string) *aadError {
	return newError(400, "unauthorized_client", 700016, "Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.", id, tenant)
}

func errSecretRequired() *aadError {
	return newError(401, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
}

func errPublicClientSecret() *aadError {
	return newError(401, "invalid_client", 700025, "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.")
}

func errBadSecret(id string) *aadError {
	return newError(401, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", id)
}

func errUnsupportedGrant(grant string) *aadError {
	return newError(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type '%s'.", grant)
}

func errCodeRedeemed() *aadError {
	return newError(400, "invalid_grant", 54005, "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.")
}

func errCodeExpired() *aadError {
	return newError(400, "invalid_grant", 70008, "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.")
}

func errGrantInvalid(detail string) *aadError {
	return newError(400, "invalid_grant", 70000, "Provided grant is invalid or malformed. %s", detail)
}

func errVerifierMismatch() *aadError {
	return newError(400, "invalid_grant", 501481, "The Code_Verifier does not match the code_challenge supplied in the authorization request.")
}

func errRedirectMismatchAtToken(uri string) *aadError {
	return newError(400, "invalid_grant", 50011, "The redirect URI '%s' specified in the request does not match the redirect URI used when the authorization code was obtained.", uri)
}

func errRefreshInactive(issued time.Time) *aadError {
	return newError(400, "invalid_grant", 700082, "The refresh token has expired due to inactivity. The token was issued on %s and was inactive for 90.00:00:00.", issued.UTC().Format("2006-01-02T15:04:05.0000000Z"))
}

func errMFARequired(resource string) *aadError {
	e := newError(400, "invalid_grant", 50076, "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '%s'.", resource)
	e.suberror = "basic_action"
	return e
}

func errScopeNotDefault(scope string) *aadError {
	return newError(400, "invalid_scope", 1002012, "The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", scope)
}

func errGrantNotOnCommon() *aadError {
	return newError(400, "invalid_request", 9001023, "The grant type is not supported over the /common or /consumers endpoints. Please use the /organizations or tenant-specific endpoint.")
}

func errNoTenantInfo() *aadError {
	return newError(400, "invalid_request", 50059, "No tenant-identifying information found in either the request or implied by any provided credentials.")
}

func errPending() *aadError {
	return newError(400, "authorization_pending", 70016, "OAuth 2.0 device flow error. Authorization is pending. Continue polling.")
}

func errSlowDown() *aadError {
	return newError(400, "slow_down", 70016, "OAuth 2.0 device flow error. Polling faster than the interval; wait longer between requests.")
}

func errDeviceExpired() *aadError {
	return newError(400, "expired_token", 70019, "Verification code expired.")
}

func errDeclined() *aadError {
	return newError(400, "authorization_declined", 70000, "The user declined to authorize the device.")
}

func errBadDeviceCode() *aadError {
	return newError(400, "bad_verification_code", 70000, "The provided value for the input parameter 'device_code' is not valid.")
}

func errDeviceUsed() *aadError {
	return newError(400, "invalid_grant", 90120, "The device flow request was already authorized or declined. Start a new device flow.")
}

// failureError is the body of an injected failure with the given status.
func failureError(status int) *aadError {
	switch {
	case status == http.StatusTooManyRequests:
		return newError(status, "temporarily_unavailable", 90055, "The tenant has been throttled since there are too many requests. Please try again later.")
	case status == http.StatusServiceUnavailable:
		return newError(status, "temporarily_unavailable", 90033, "A transient error has occurred. Please try again.")
	case status >= 500:
		return newError(status, "server_error", 50000, "There was an error issuing a token or an issue with our sign-in service.")
	default:
		return newError(status, "invalid_request", 50000, "There was an error issuing a token or an issue with our sign-in service.")
	}
}

// ids is the trace and correlation id pair of one answer.
type ids struct {
	trace, correlation string
	at                 time.Time
}

// requestIDs makes a trace id and takes the correlation id from the
// client-request-id header when it looks like a GUID, as Microsoft does.
func (p *IdP) requestIDs(r *http.Request) ids {
	c := r.Header.Get("client-request-id")
	if !looksLikeGUID(c) {
		c = randomGUID()
	}
	return ids{trace: randomGUID(), correlation: c, at: p.now().UTC()}
}

// description is the full error_description: headline and the trace block.
func (e *aadError) description(id ids) string {
	return e.headline() + "\r\nTrace ID: " + id.trace + "\r\nCorrelation ID: " + id.correlation + "\r\nTimestamp: " + id.at.Format(timestampLayout)
}

// writeError sends e as Microsoft's JSON error document.
func (p *IdP) writeError(w http.ResponseWriter, r *http.Request, e *aadError) {
	id := p.requestIDs(r)
	body := errorBody{
		Error:            e.err,
		ErrorDescription: e.description(id),
		ErrorCodes:       []int{e.code},
		Timestamp:        id.at.Format(timestampLayout),
		TraceID:          id.trace,
		CorrelationID:    id.correlation,
		ErrorURI:         "https://login.microsoftonline.com/error?code=" + strconv.Itoa(e.code),
		Suberror:         e.suberror,
	}
	p.log.Debug("token endpoint error", "path", r.URL.Path, "error", e.err, "code", e.code)
	w.Header().Set("x-ms-request-id", id.trace)
	w.Header().Set("client-request-id", id.correlation)
	writeJSON(w, e.status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encoding response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store, no-cache")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// AuthorizeError is an authorize-endpoint error that Microsoft shows as a
// page instead of redirecting, because the redirect target cannot be
// trusted: unknown tenant or client, bad redirect URI, unknown user.
type AuthorizeError struct {
	// Code is the AADSTS number, e.g. 50011.
	Code int
	// Description is "AADSTSnnnnn: text" followed by the trace block.
	Description string
}

// Error returns the description.
func (e *AuthorizeError) Error() string {
	return "sign-in page error: " + e.Description
}

func (p *IdP) pageError(e *aadError) *AuthorizeError {
	id := ids{trace: randomGUID(), correlation: randomGUID(), at: p.now().UTC()}
	return &AuthorizeError{Code: e.code, Description: e.description(id)}
}

// writePage sends an authorize error page.
func writePage(w http.ResponseWriter, e *AuthorizeError) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusBadRequest)
	_, _ = fmt.Fprintf(w, "<!DOCTYPE html>\n<html><head><title>Sign in to your account</title></head>\n<body><h1>Sorry, but we're having trouble signing you in.</h1>\n<pre>%s</pre></body></html>\n", html.EscapeString(e.Description))
}
