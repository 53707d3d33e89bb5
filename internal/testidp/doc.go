// Package testidp is an in-process identity provider for tests that speaks the
// Microsoft identity platform v2.0 protocol: authorize, token (authorization
// code with PKCE, refresh with rotation, device code, client credentials) and
// devicecode endpoints, with Microsoft's JSON errors and AADSTS codes.
package testidp
