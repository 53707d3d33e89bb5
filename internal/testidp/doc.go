// Package testidp is an in-process identity provider that speaks the Microsoft
// identity platform v2.0 protocol on a real loopback HTTP server, for tests,
// the Dovecot rig, benchmarks and the demo.
//
// Endpoints, all under {Authority}/{tenant}/:
//
//   - oauth2/v2.0/authorize: authorization code request (RFC 6749 §4.1) with
//     PKCE (RFC 7636, S256 and plain) and automatic consent: the signed-in user
//     (SetSignedInUser) or the login_hint user is approved without a page.
//   - oauth2/v2.0/token: grant types authorization_code, refresh_token (with
//     rotation: every use returns a new refresh token and the old one stays
//     valid, as Microsoft documents), urn:ietf:params:oauth:grant-type:device_code
//     (RFC 8628 §3.4/§3.5) and client_credentials. Client authentication by the
//     client_secret form field or HTTP Basic (RFC 6749 §2.3.1), or by a
//     client assertion (RFC 7523 §2.2, Microsoft's certificate credentials)
//     verified against Client.Certificates: signature (PS256 or RS256, the
//     certificate named by x5t#S256 or x5t), iss and sub, aud, nbf and exp,
//     and a jti used once (assertion.go).
//   - oauth2/v2.0/devicecode: device authorization request (RFC 8628 §3.1).
//   - v2.0/.well-known/openid-configuration: endpoint discovery only.
//
// Errors are sent as Microsoft sends them: JSON with error, error_description
// ("AADSTSnnnnn: text\r\nTrace ID: …\r\nCorrelation ID: …\r\nTimestamp: …"),
// error_codes, timestamp, trace_id, correlation_id and error_uri; HTTP 400,
// or 401 for invalid_client. Errors of the authorize endpoint that make the
// redirect URI untrustworthy (unknown tenant or client, redirect mismatch,
// unknown user) are an HTML error page; all others are a redirect carrying
// error and error_description. The AADSTS numbers follow Microsoft's error
// reference where one exists; for conditions the reference does not cover
// (slow_down, authorization_declined, bad_verification_code) the nearest
// code is used.
//
// Tokens are HS256 JWTs with the header {"alg":"HS256","typ":"JWT"} and no
// kid, signed with Options.SigningKey, so Dovecot's local validation can check
// them with the same key stored under "default". Access tokens carry no azp
// claim for the same reason. Real Microsoft tokens are RS256; code under test
// must not verify id_token signatures against Microsoft keys anyway.
//
// Not supported: client assertions (certificates), the implicit and hybrid
// flows, ROPC, on-behalf-of, response_mode other than query, consent and
// account-selection pages, JWKS, per-app redirect URI registrations (any
// loopback http redirect is accepted, as for a "Mobile and desktop" app
// registered with http://localhost) and national clouds.
package testidp
