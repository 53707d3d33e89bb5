package testidp

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"strings"
	"time"
)

// Client assertions (certificate credentials, RFC 7523 §2.2 as Microsoft
// documents them): the IdP verifies each one for real, against the
// certificates registered on the client, and refuses with Microsoft's codes.
const (
	// jwtBearerAssertion is the client_assertion_type of a JWT assertion.
	jwtBearerAssertion = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// assertionSkew is the clock difference tolerated on nbf and exp.
	assertionSkew = 5 * time.Minute
	// maxAssertionBytes bounds an assertion.
	maxAssertionBytes = 16 << 10
)

// Microsoft's refusals of client assertions. Microsoft documents no code of
// its own for a replayed jti; the IdP answers it with AADSTS50013, the
// generic "assertion is invalid" code.
func errAssertionMalformed(why string) *aadError {
	return newError(401, "invalid_client", 50027, "JWT token is invalid or malformed: %s.", why)
}

func errCertNotRegistered(id, thumb string) *aadError {
	return newError(401, "invalid_client", 700027, "The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '%s', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '%s'.]", thumb, id)
}

func errAssertionSignature() *aadError {
	return newError(401, "invalid_client", 700027, "Client assertion failed signature validation.")
}

func errAssertionApp() *aadError {
	return newError(401, "invalid_client", 700021, "Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials.")
}

func errAssertionAudience(aud string) *aadError {
	return newError(401, "invalid_client", 700023, "Client assertion audience claim does not match Realm issuer. Audience: '%s'. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials.", aud)
}

func errAssertionTime(now, nbf, exp time.Time) *aadError {
	return newError(401, "invalid_client", 700024, "Client assertion is not within its valid time range. Current time: %s, assertion valid from %s, expiry time of assertion %s. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials.",
		now.UTC().Format(time.RFC3339), nbf.UTC().Format(time.RFC3339), exp.UTC().Format(time.RFC3339))
}

func errAssertionReplayed() *aadError {
	return newError(401, "invalid_client", 50013, "Assertion is invalid: a client assertion with this jti was already used. Make a new assertion for every request.")
}

// assertionHeader is the JOSE header of a client assertion.
type assertionHeader struct {
	Alg     string `json:"alg"`
	Typ     string `json:"typ"`
	X5t     string `json:"x5t"`      // SHA-1 thumbprint (Microsoft's older form)
	X5tS256 string `json:"x5t#S256"` // SHA-256 thumbprint
}

// assertionClaims are the claims the IdP checks.
type assertionClaims struct {
	Aud string `json:"aud"`
	Iss string `json:"iss"`
	Sub string `json:"sub"`
	Jti string `json:"jti"`
	Nbf int64  `json:"nbf"`
	Exp int64  `json:"exp"`
}

// verifyAssertion checks a client assertion of client c sent to the token
// endpoint of tenant: a JWT signed (RS256 or PS256) by a certificate
// registered on c and named by its thumbprint, with iss and sub the
// client_id, aud this token endpoint, now within nbf and exp, and a jti
// not seen before. A good assertion's jti is remembered until it expires.
func (p *IdP) verifyAssertion(c Client, tenant string, form url.Values) *aadError {
	if t := form.Get("client_assertion_type"); t != jwtBearerAssertion {
		if t == "" {
			return errMissingParam("client_assertion_type")
		}
		return errAssertionMalformed("client_assertion_type must be " + jwtBearerAssertion)
	}
	raw := form.Get("client_assertion")
	parts := strings.Split(raw, ".")
	if len(raw) > maxAssertionBytes || len(parts) != 3 {
		return errAssertionMalformed("not three base64url parts")
	}
	var h assertionHeader
	var cl assertionClaims
	if !decodePart(parts[0], &h) || !decodePart(parts[1], &cl) {
		return errAssertionMalformed("header or claims are not base64url JSON")
	}
	if h.Alg != "RS256" && h.Alg != "PS256" {
		return errAssertionMalformed("alg must be PS256 or RS256")
	}
	cert, thumb := c.certificateFor(h)
	if cert == nil {
		return errCertNotRegistered(c.ID, thumb)
	}
	if !verifySignature(cert, h.Alg, parts) {
		return errAssertionSignature()
	}
	if cl.Iss != c.ID || cl.Sub != c.ID {
		return errAssertionApp()
	}
	if !p.isTokenEndpoint(cl.Aud, tenant) {
		return errAssertionAudience(cl.Aud)
	}
	now := p.now().Add(p.opts.ClockSkew)
	nbf, exp := time.Unix(cl.Nbf, 0), time.Unix(cl.Exp, 0)
	if cl.Exp == 0 || now.After(exp.Add(assertionSkew)) || cl.Nbf != 0 && now.Before(nbf.Add(-assertionSkew)) {
		return errAssertionTime(now, nbf, exp)
	}
	if cl.Jti == "" {
		return errAssertionMalformed("jti is missing")
	}
	return p.spendJTI(c.ID+" "+cl.Jti, exp.Add(assertionSkew), now)
}

// certificateFor finds the registered certificate the header names by
// x5t#S256 (or x5t), and returns the thumbprint it was looked up by.
func (c Client) certificateFor(h assertionHeader) (*x509.Certificate, string) {
	thumb := h.X5tS256
	if thumb == "" {
		thumb = h.X5t
	}
	want, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(thumb, "="))
	if err != nil || len(want) == 0 {
		return nil, thumb
	}
	for _, cert := range c.Certificates {
		s256, s1 := sha256.Sum256(cert.Raw), sha1.Sum(cert.Raw)
		if h.X5tS256 != "" && string(want) == string(s256[:]) || h.X5tS256 == "" && string(want) == string(s1[:]) {
			return cert, thumb
		}
	}
	return nil, strings.ToUpper(hex.EncodeToString(want))
}

// verifySignature checks the JWS signature of parts with cert's RSA key.
func verifySignature(cert *x509.Certificate, alg string, parts []string) bool {
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return false
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if alg == "PS256" {
		return rsa.VerifyPSS(pub, crypto.SHA256, digest[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
	}
	return rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig) == nil
}

// isTokenEndpoint reports whether aud is this IdP's token endpoint for the
// tenant of the request (by the name used, the domain or the GUID).
func (p *IdP) isTokenEndpoint(aud, tenant string) bool {
	for _, t := range []string{tenant, p.opts.Tenant, p.tenantID} {
		if aud == p.authority+"/"+url.PathEscape(t)+"/oauth2/v2.0/token" {
			return true
		}
	}
	return false
}

// spendJTI records a jti until expires, refusing one already recorded.
func (p *IdP) spendJTI(key string, expires, now time.Time) *aadError {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, exp := range p.jtis {
		if now.After(exp) {
			delete(p.jtis, k)
		}
	}
	if _, seen := p.jtis[key]; seen {
		return errAssertionReplayed()
	}
	p.jtis[key] = expires
	return nil
}

// decodePart decodes one base64url JSON part of a JWT into v.
func decodePart(s string, v any) bool {
	b, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil && json.Unmarshal(b, v) == nil
}
