package tokens

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/xoauthd/xoauthd/config"
)

// Client assertions (RFC 7523 §2.2; OpenID Connect private_key_jwt), as
// Microsoft documents its "certificate credentials": a JWT signed with the
// certificate's key, alg PS256, with the certificate's SHA-256 thumbprint
// in x5t#S256; aud the token endpoint; iss and sub the client_id; a short
// lifetime and a unique jti, so that each token request has its own.
const (
	// ClientAssertionType is the client_assertion_type of a JWT assertion.
	ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// assertionLifetime is how long one assertion is valid: long enough for
	// one request, short enough that a captured one is soon useless.
	assertionLifetime = 5 * time.Minute
)

// ClientCertificate authenticates the application with a certificate: each
// token request carries a new signed assertion. The files are read at each
// request, so a renewed certificate takes effect as soon as they are
// replaced.
type ClientCertificate struct {
	Files config.ClientCertificate
	// Now is the clock of the assertion's times (nil: time.Now).
	Now func() time.Time
}

// TokenParams returns client_assertion_type and a fresh client_assertion
// for clientID at tokenURL.
func (c ClientCertificate) TokenParams(_ context.Context, clientID, tokenURL string) (url.Values, error) {
	pair, err := config.LoadClientCertificate(&c.Files)
	if err != nil {
		return nil, &ConfigError{Meaning: "the client certificate cannot be used", Fix: err.Error(), Err: err}
	}
	now := time.Now()
	if c.Now != nil {
		now = c.Now()
	}
	a, err := signAssertion(pair, clientID, tokenURL, now)
	if err != nil {
		return nil, err
	}
	return url.Values{"client_assertion_type": {ClientAssertionType}, "client_assertion": {a}}, nil
}

// assertionHeader is the JOSE header of an assertion.
type assertionHeader struct {
	Alg     string `json:"alg"`
	Typ     string `json:"typ"`
	X5tS256 string `json:"x5t#S256"`
}

// assertionClaims are the claims Microsoft requires of an assertion.
type assertionClaims struct {
	Aud string `json:"aud"`
	Iss string `json:"iss"`
	Sub string `json:"sub"`
	Jti string `json:"jti"`
	Nbf int64  `json:"nbf"`
	Iat int64  `json:"iat"`
	Exp int64  `json:"exp"`
}

// signAssertion makes one assertion with pair's RSA key (LoadClientCertificate
// checked that it is one).
func signAssertion(pair *tls.Certificate, clientID, tokenURL string, now time.Time) (string, error) {
	key, ok := pair.PrivateKey.(*rsa.PrivateKey)
	if !ok {
		return "", fmt.Errorf("signing a client assertion: the key is %T, not RSA", pair.PrivateKey)
	}
	thumb := sha256.Sum256(pair.Leaf.Raw)
	header, err := json.Marshal(assertionHeader{Alg: "PS256", Typ: "JWT", X5tS256: b64url(thumb[:])})
	if err != nil {
		return "", err
	}
	claims, err := json.Marshal(assertionClaims{
		Aud: tokenURL, Iss: clientID, Sub: clientID, Jti: newJTI(),
		Nbf: now.Unix(), Iat: now.Unix(), Exp: now.Add(assertionLifetime).Unix(),
	})
	if err != nil {
		return "", err
	}
	signed := b64url(header) + "." + b64url(claims)
	digest := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPSS(rand.Reader, key, crypto.SHA256, digest[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	if err != nil {
		return "", fmt.Errorf("signing a client assertion: %w", err)
	}
	return signed + "." + b64url(sig), nil
}

// newJTI returns a random UUID (version 4), the form Microsoft shows.
func newJTI() string {
	var b [16]byte
	rand.Read(b[:]) // never fails: crypto/rand crashes the program instead
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
