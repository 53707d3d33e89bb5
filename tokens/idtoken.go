package tokens

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// maxIDToken bounds the size of an id_token that is decoded.
const maxIDToken = 64 << 10

// idClaims are the id_token claims that name the signed-in user.
type idClaims struct {
	PreferredUsername string `json:"preferred_username"`
	UPN               string `json:"upn"`
	Email             string `json:"email"`
}

// parseIDToken decodes the claims of a JWT (RFC 7519) without checking its
// signature: the token comes straight from the provider's token endpoint
// over TLS, which OpenID Connect Core §3.1.3.7 allows as validation of its
// origin, and it only decides whether xoauthd keeps a token it already has.
func parseIDToken(raw string) (idClaims, error) {
	if len(raw) > maxIDToken {
		return idClaims{}, fmt.Errorf("id_token is larger than %d bytes", maxIDToken)
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return idClaims{}, errors.New("id_token is not a JWT (want three dot-separated parts)")
	}
	body, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return idClaims{}, fmt.Errorf("id_token payload: %w", err)
	}
	var c idClaims
	if err := json.Unmarshal(body, &c); err != nil {
		return idClaims{}, fmt.Errorf("id_token payload: %w", err)
	}
	return c, nil
}

// names returns the distinct non-empty user names of c, most specific first.
func (c idClaims) names() []string {
	var out []string
	for _, n := range []string{c.PreferredUsername, c.UPN, c.Email} {
		n = strings.TrimSpace(n)
		if n != "" && !containsFold(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// matches reports whether any of the names equals identity, ignoring case.
func (c idClaims) matches(identity string) bool {
	return containsFold(c.names(), strings.TrimSpace(identity))
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}
