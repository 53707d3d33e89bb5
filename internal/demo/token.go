package demo

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Access token checks of the demo mail server.
const (
	// maxTokenBytes bounds an access token before it is decoded.
	maxTokenBytes = 8 << 10
	// outlookAudience is the aud of delegated Exchange Online tokens.
	outlookAudience = "https://outlook.office.com"
	// clockSkew is how far exp and nbf may be off.
	clockSkew = time.Minute
)

// tokenVerifier checks the access tokens of the demo identity provider the
// way Exchange Online checks Microsoft's: signature, lifetime, audience, and
// that the token's user is the mailbox it logs in to. The demo provider signs
// with HS256 and a key it shares with the verifier.
type tokenVerifier struct {
	key []byte
	now func() time.Time
}

// jwtHeader is the part of a JWT header the verifier reads.
type jwtHeader struct {
	Alg string `json:"alg"`
}

// accessClaims are the claims the verifier reads.
type accessClaims struct {
	Aud               string `json:"aud"`
	Exp               int64  `json:"exp"`
	Nbf               int64  `json:"nbf"`
	Upn               string `json:"upn"`
	PreferredUsername string `json:"preferred_username"`
	Scp               string `json:"scp"`
}

// Errors of verify; the mail server answers every one of them alike.
var (
	errTokenMalformed = errors.New("access token is not a JWT")
	errTokenSignature = errors.New("access token signature does not verify")
	errTokenExpired   = errors.New("access token expired or not yet valid")
	errTokenAudience  = errors.New("access token is not for Exchange Online")
	errTokenUser      = errors.New("access token belongs to another user")
	errTokenScope     = errors.New("access token grants no mail access")
)

// verify checks that token is a valid access token for user.
func (v tokenVerifier) verify(user, token string) error {
	if len(token) > maxTokenBytes {
		return errTokenMalformed
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return errTokenMalformed
	}
	var hdr jwtHeader
	if err := decodeSegment(parts[0], &hdr); err != nil || hdr.Alg != "HS256" {
		return errTokenMalformed
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return errTokenMalformed
	}
	mac := hmac.New(sha256.New, v.key)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return errTokenSignature
	}
	var c accessClaims
	if err := decodeSegment(parts[1], &c); err != nil {
		return errTokenMalformed
	}
	return v.checkClaims(user, c)
}

// checkClaims checks lifetime, audience, user and scope.
func (v tokenVerifier) checkClaims(user string, c accessClaims) error {
	now := v.now()
	if now.After(time.Unix(c.Exp, 0).Add(clockSkew)) || now.Add(clockSkew).Before(time.Unix(c.Nbf, 0)) {
		return errTokenExpired
	}
	if strings.TrimSuffix(c.Aud, "/") != outlookAudience {
		return errTokenAudience
	}
	owner := c.Upn
	if owner == "" {
		owner = c.PreferredUsername
	}
	if !strings.EqualFold(owner, user) {
		return errTokenUser
	}
	for _, s := range strings.Fields(c.Scp) {
		switch s {
		case "IMAP.AccessAsUser.All", "POP.AccessAsUser.All", "SMTP.Send":
			return nil
		}
	}
	return errTokenScope
}

// decodeSegment decodes one base64url JSON segment of a JWT into v.
func decodeSegment(seg string, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return fmt.Errorf("decoding jwt segment: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("parsing jwt segment: %w", err)
	}
	return nil
}
