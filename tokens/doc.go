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
// A Backend keeps the token sets; the file Store is the default. A
// RedisStore shares them between the replicas of a deployment: one value
// per identity, AES-256-GCM with the identity and the value's version as
// additional data (a value copied to another identity, or an old one put
// back, does not decrypt), written by compare-and-set on the version so an
// older token set never replaces a newer one. Each replica caches records
// in memory and drops a copy when another replica announces a write on a
// pub/sub channel; without the subscription it reads Redis before each
// use, and with Redis unreachable it serves what it has cached. A refresh
// takes a lock with an expiry in Redis, so one replica asks the provider
// and the others wait for what it stores.
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
