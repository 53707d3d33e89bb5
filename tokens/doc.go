// Package tokens owns OAuth 2.0: providers (microsoft, google, custom
// endpoints), the flows that obtain a refresh token (authorization code with
// PKCE and a loopback redirect, device code, client credentials), the
// encrypted token store, and a Manager that hands out access tokens per
// identity with single-flight refresh. Token errors are classified into
// "needs a new login" (ErrNeedsLogin, with the fix) and temporary ones.
package tokens
