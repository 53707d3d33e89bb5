package tokens

// Microsoft Entra ID (AADSTS) error codes that xoauthd explains. Sources:
// https://learn.microsoft.com/entra/identity-platform/reference-error-codes
// and the refresh-token and flow documentation. Microsoft warns that codes
// and their text change, so the class of an error comes from the OAuth
// "error" field first (see classifyResponse); the code only supplies the words
// and decides when the "error" field is generic (invalid_request) or missing.

// class is what kind of action an error asks for.
type class int

const (
	classNeedsLogin    class = iota + 1 // a person must sign in again
	classTemporary                      // retry later; nothing to fix
	classConfiguration                  // the app registration, provider settings or account need a fix
)

// String is the class as stored and shown: "needs login", "temporary", "configuration".
func (c class) String() string {
	switch c {
	case classNeedsLogin:
		return "needs login"
	case classTemporary:
		return "temporary"
	case classConfiguration:
		return "configuration"
	}
	return "unknown"
}

// entraCode explains one AADSTS code.
type entraCode struct {
	class   class
	meaning string // what happened, in plain words
	advice  string // what to do besides a new login; may be empty
}

// Shared texts for codes that mean the same to the person reading them.
const (
	adviceScopes = `add the Office 365 Exchange Online permissions (IMAP.AccessAsUser.All, ` +
		`POP.AccessAsUser.All, SMTP.Send) to the app registration and check the scopes ` +
		`(https://outlook.office.com/...)`
	adviceMFA         = "complete multi-factor authentication in the browser"
	adviceAppMissing  = "check client_id and tenant; a multi-tenant app must be consented in this tenant by an admin"
	adviceTenantOnly  = "set tenant to the tenant GUID or domain (client credentials never work on common or consumers)"
	adviceBug         = "this is a bug in xoauthd; please report it"
	adviceDevice      = "an admin must exempt the app; xoauthd cannot satisfy a device requirement"
	adviceCertificate = "upload the certificate file named by client_certificate.cert (not the key) to the app registration " +
		"under Certificates & secrets > Certificates, and check that client_certificate.key is that certificate's key"
)

// entraCodes maps every code of the Entra ID token endpoint table in the
// project's Microsoft notes (plus the endpoint and PKCE codes named there) to
// its class and words. It is never modified.
var entraCodes = map[int]entraCode{
	// Interactive sign-in needed again.
	50076:  {classNeedsLogin, "multi-factor authentication is now required", adviceMFA},
	50079:  {classNeedsLogin, "the account must register for multi-factor authentication", "register MFA and " + adviceMFA},
	50074:  {classNeedsLogin, "strong authentication (MFA) is required", adviceMFA},
	700082: {classNeedsLogin, "refresh token expired", ""},
	70008:  {classNeedsLogin, "refresh token or authorization code expired", ""},
	700084: {classNeedsLogin, "refresh token of a single-page-app registration expired (they last 24 hours)", `register the redirect URI under "Mobile and desktop applications", not "Single-page application"`},
	70043:  {classNeedsLogin, "refresh token expired by a Conditional Access sign-in frequency policy", "sign in again at the policy's interval, or ask an admin to exempt the app"},
	50173:  {classNeedsLogin, "grant revoked (password changed or reset, or tokens revoked)", ""},
	50089:  {classNeedsLogin, "sign-in session expired or was revoked", ""},
	50132:  {classNeedsLogin, "session revoked (password changed or account changed)", ""},
	50133:  {classNeedsLogin, "session invalid after a password change or expiry", ""},
	70000:  {classNeedsLogin, "refresh token or grant is invalid", `for personal Microsoft accounts set tenant to "consumers"`},
	65001:  {classNeedsLogin, "the app has no consent for the requested permissions", "accept the consent prompt (or ask an admin to grant consent)"},
	65004:  {classNeedsLogin, "the user declined consent", "accept the permissions when asked"},
	54005:  {classNeedsLogin, "authorization code was already redeemed", ""},
	50126:  {classNeedsLogin, "wrong user name or password", "enter the right password on the sign-in page"},
	70019:  {classNeedsLogin, "device code expired before the sign-in was finished", ""},
	90120:  {classNeedsLogin, "device code was already used", ""},

	// Someone must change the app registration, the provider settings or the account.
	90094:   {classConfiguration, "an administrator must grant consent for this app", "ask a Global or Privileged Role Administrator to grant admin consent"},
	90095:   {classConfiguration, "an administrator must grant consent for this app", "ask a Global or Privileged Role Administrator to grant admin consent"},
	650052:  {classConfiguration, "the app needs access to a service the tenant does not have", adviceScopes},
	650054:  {classConfiguration, "a requested permission or resource is no longer available", adviceScopes},
	650056:  {classConfiguration, "the requested permissions are not in the app's permission list", adviceScopes},
	650057:  {classConfiguration, "the requested resource is not in the app's API permissions", adviceScopes},
	70011:   {classConfiguration, "invalid scope", adviceScopes},
	28002:   {classConfiguration, "invalid scope value", adviceScopes},
	500011:  {classConfiguration, "the resource (Exchange Online) was not found in this tenant", "check the tenant and that the scopes use https://outlook.office.com/"},
	7000215: {classConfiguration, "invalid client secret", "paste the secret's Value, not its Secret ID"},
	7000222: {classConfiguration, "client secret expired", "create a new client secret in the app registration"},
	7000218: {classConfiguration, "the app must authenticate with a secret (public client flows are off)", `enable "Allow public client flows" in the app registration, or set client_secret`},
	700025:  {classConfiguration, "a public client sent a client secret", "remove client_secret from the provider, or register the app as a confidential (web) client"},
	// Certificate credentials (client assertions, assertion.go).
	700027:  {classConfiguration, "the client assertion failed signature validation: the certificate is not registered on the app, or was signed by another key", adviceCertificate},
	700024:  {classConfiguration, "the client assertion is not within its valid time range (expired or not yet valid)", "check this machine's clock (NTP): an assertion is valid for 5 minutes from when xoauthd makes it"},
	700023:  {classConfiguration, "the client assertion's audience is not this tenant's token endpoint", "leave token_url and authority unset (the assertion's aud is the token_url xoauthd posts to) and set tenant to the tenant's GUID or domain"},
	700021:  {classConfiguration, "the client assertion names another application than client_id", "check client_id: it must be the application (client) ID of the app the certificate is registered on"},
	50013:   {classConfiguration, "the client assertion was refused as invalid (for example replayed: each one may be used once)", "xoauthd makes a new assertion for every request, so look for a proxy or tool that repeats requests to the token endpoint, and check this machine's clock"},
	50027:   {classConfiguration, "the client assertion is not a valid JWT", adviceBug},
	700016:  {classConfiguration, "application not found in this tenant", adviceAppMissing},
	700011:  {classConfiguration, "application not found in this tenant", adviceAppMissing},
	50011:   {classConfiguration, "redirect URI mismatch", `register "http://localhost" as a redirect URI on the "Mobile and desktop applications" platform`},
	90002:   {classConfiguration, "tenant not found", "fix the tenant id or domain (or the authority for a national cloud)"},
	50194:   {classConfiguration, "the app is single-tenant but a multi-tenant endpoint (common) was used", "set tenant to the tenant GUID or domain"},
	9002332: {classConfiguration, "the app is for work or school accounts but the consumers endpoint was used", "set tenant to the organization's tenant"},
	500208:  {classConfiguration, "this kind of account cannot sign in on this tenant endpoint", `use tenant "consumers" for personal accounts and the organization's tenant for work accounts`},
	50020:   {classConfiguration, "the user is not a member of this tenant", "sign in with an account of the tenant, or fix the tenant"},
	50034:   {classConfiguration, "the user account does not exist in this directory", "check the identity and the tenant"},
	50053:   {classConfiguration, "account locked or blocked after too many sign-in attempts", "wait, or ask an admin to unlock the account"},
	50057:   {classConfiguration, "account disabled", "ask an admin to enable the account"},
	50055:   {classConfiguration, "password expired", "change the password, then sign in again"},
	53003:   {classConfiguration, "blocked by Conditional Access", "ask an admin to adjust the Conditional Access policy (device compliance, location, app)"},
	530035:  {classConfiguration, "blocked by security defaults", "an admin must decide; security defaults block this sign-in"},
	53000:   {classConfiguration, "Conditional Access requires a compliant device", adviceDevice},
	53001:   {classConfiguration, "Conditional Access requires a domain-joined device", adviceDevice},
	9001023: {classConfiguration, "this grant is not supported on the common or consumers endpoint", adviceTenantOnly},
	90124:   {classConfiguration, "this grant is not supported on the common or consumers endpoint", adviceTenantOnly},
	90130:   {classConfiguration, "this grant is not supported on the common or consumers endpoint", adviceTenantOnly},
	501481:  {classConfiguration, "PKCE code verifier did not match", adviceBug},
	50147:   {classConfiguration, "PKCE code challenge has an invalid size", adviceBug},
	501491:  {classConfiguration, "PKCE code challenge has an invalid size", adviceBug},

	// Goes away by itself.
	70016: {classTemporary, "waiting for the user to finish signing in", ""},
	90055: {classTemporary, "the tenant is being throttled", ""},
	50196: {classTemporary, "too many identical requests (loop detected)", ""},
}

// errorFieldClass maps the OAuth "error" field (RFC 6749 §5.2, RFC 8628 §3.5,
// OpenID Connect) to a class. invalid_request and unknown values are missing
// on purpose: for them the AADSTS code, then the HTTP status decides.
var errorFieldClass = map[string]class{
	"invalid_grant":             classNeedsLogin,
	"interaction_required":      classNeedsLogin,
	"consent_required":          classNeedsLogin,
	"login_required":            classNeedsLogin,
	"access_denied":             classNeedsLogin,
	"authorization_declined":    classNeedsLogin,
	"expired_token":             classNeedsLogin,
	"invalid_client":            classConfiguration,
	"unauthorized_client":       classConfiguration,
	"invalid_scope":             classConfiguration,
	"invalid_resource":          classConfiguration,
	"unsupported_grant_type":    classConfiguration,
	"unsupported_response_type": classConfiguration,
	"bad_verification_code":     classConfiguration,
	"temporarily_unavailable":   classTemporary,
	"server_error":              classTemporary,
	"slow_down":                 classTemporary,
	"authorization_pending":     classTemporary,
}

// errorFieldMeaning words the "error" values that say more than the code
// Microsoft sends with them (a declined device sign-in comes with the
// generic AADSTS70000).
var errorFieldMeaning = map[string]string{
	"authorization_declined": "the sign-in was declined",
	"expired_token":          "the device code expired before the sign-in was finished",
	"bad_verification_code":  "the provider does not know this device code (a bug in xoauthd)",
}
