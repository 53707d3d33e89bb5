// Package tokens owns OAuth 2.0 for xoauthd: the providers (microsoft,
// google, custom endpoints), the flows that obtain a refresh token, the
// encrypted token store, and a Manager that hands out access tokens per
// identity.
//
// Flows, built on golang.org/x/oauth2:
//   - authorization code with PKCE S256 (RFC 6749 §4.1, RFC 7636) and a
//     loopback redirect http://localhost:PORT/ (RFC 8252 §7.3), with
//     login_hint and prompt=select_account;
//   - device authorization grant (RFC 8628), with slow_down honoured;
//   - client credentials (RFC 6749 §4.4) with a client secret; Credential
//     is the seam for certificate credentials, which are not built yet.
//
// After an interactive flow the id_token's preferred_username, upn or email
// must name the identity that is being logged in; otherwise nothing is stored.
//
// The Store is one file, AES-256-GCM over the whole content with a 32-byte
// key. Writers take an advisory lock file beside it, re-read the file under
// the lock, change one identity and replace the file atomically (temporary
// file, fsync, rename, fsync of the directory); readers notice a file
// replaced by another process and re-read it.
//
// The Manager refreshes an access token when less than a margin is left,
// one request per identity at a time on a context that outlives the caller,
// and saves a rotated refresh token before handing out the new access token.
// Provider errors are classified (errors.Is) as ErrNeedsLogin, ErrTemporary
// or ErrConfiguration, with Microsoft's AADSTS codes explained in words.
//
// Not supported: the resource owner password grant (it fails with MFA and
// federation), implicit flows, and certificate client credentials.
package tokens
