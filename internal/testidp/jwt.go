package testidp

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"
)

const (
	// jwtHeader is the exact header of every token: no kid, so Dovecot's
	// local validation uses its "default" key.
	jwtHeader = `{"alg":"HS256","typ":"JWT"}`
	// idTokenLifetime is the lifetime of id tokens (Microsoft: one hour).
	idTokenLifetime = time.Hour
	// graphAudience is the aud of Microsoft Graph tokens, issued for bare
	// scope names and for sign-in-only scope sets.
	graphAudience = "00000003-0000-0000-c000-000000000000"
	graphResource = "https://graph.microsoft.com"
	// defaultDelegatedScopes is what MintAccessToken and RefreshTokenFor grant.
	defaultDelegatedScopes = "https://outlook.office.com/IMAP.AccessAsUser.All https://outlook.office.com/POP.AccessAsUser.All https://outlook.office.com/SMTP.Send offline_access openid profile email"
)

// outlookAppRoles are the application permissions of an app-only token.
func outlookAppRoles() []string {
	return []string{"IMAP.AccessAsApp", "POP.AccessAsApp", "SMTP.SendAsApp"}
}

// scopeSet is a parsed scope parameter. Only one resource can be in a
// token: scopes of resources other than the first one named are dropped,
// as Microsoft issues the token for the first resource.
type scopeSet struct {
	resource string   // "https://outlook.office.com"; "" when only OIDC scopes
	names    []string // permission names without the resource, for scp
	oidc     []string // openid, profile, email in request order
	offline  bool     // offline_access: issue a refresh token
	openid   bool     // issue an id token
	raw      string   // the parameter as sent, normalised to single spaces
}

func parseScopes(s string) scopeSet {
	var set scopeSet
	fields := strings.Fields(s)
	set.raw = strings.Join(fields, " ")
	for _, f := range fields {
		switch lf := strings.ToLower(f); lf {
		case "offline_access":
			set.offline = true
			continue
		case "openid", "profile", "email":
			set.openid = set.openid || lf == "openid"
			set.oidc = append(set.oidc, lf)
			continue
		}
		res, name := splitScope(f)
		if res == "" || name == "" {
			continue // "/x" or "x/": names no permission
		}
		if set.resource == "" {
			set.resource = res
		}
		if !strings.EqualFold(res, set.resource) {
			continue
		}
		if name == ".default" {
			set.names = append(set.names, defaultNames(res)...)
			continue
		}
		set.names = append(set.names, name)
	}
	return set
}

// splitScope splits "https://outlook.office.com/SMTP.Send" (or
// "{resource GUID}/User.Read") into resource and permission; a bare name
// belongs to Microsoft Graph.
func splitScope(s string) (resource, name string) {
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return graphResource, s
	}
	return s[:i], s[i+1:]
}

// defaultNames are the delegated permissions "/.default" stands for.
func defaultNames(resource string) []string {
	if strings.Contains(strings.ToLower(resource), "outlook") {
		return []string{"IMAP.AccessAsUser.All", "POP.AccessAsUser.All", "SMTP.Send"}
	}
	return []string{"User.Read"}
}

// audience is the aud claim for the set.
func (s scopeSet) audience() string {
	if s.resource == "" || s.resource == graphResource || s.resource == graphAudience {
		return graphAudience
	}
	return s.resource
}

// scp is the scp claim: permission names, or the OIDC scopes of a
// sign-in-only request.
func (s scopeSet) scp() string {
	if len(s.names) == 0 {
		return strings.Join(s.oidc, " ")
	}
	return strings.Join(s.names, " ")
}

// responseScope is the scope field of a token response: the granted
// permissions with their resource, then the OIDC scopes.
func (s scopeSet) responseScope() string {
	out := make([]string, 0, len(s.names)+len(s.oidc))
	for _, n := range s.names {
		out = append(out, s.resource+"/"+n)
	}
	return strings.Join(append(out, s.oidc...), " ")
}

// tokenGrant is what a token is issued for.
type tokenGrant struct {
	clientID string
	user     string // lower-case address; "" for app-only
	scopes   scopeSet
	nonce    string
}

// accessClaims are the claims of an access token. There is deliberately no
// azp: Dovecot looks its validation key up by azp.
type accessClaims struct {
	Aud               string   `json:"aud"`
	Iss               string   `json:"iss"`
	Iat               int64    `json:"iat"`
	Nbf               int64    `json:"nbf"`
	Exp               int64    `json:"exp"`
	AppID             string   `json:"appid,omitempty"`
	Email             string   `json:"email,omitempty"`
	Name              string   `json:"name,omitempty"`
	Oid               string   `json:"oid"`
	PreferredUsername string   `json:"preferred_username,omitempty"`
	Roles             []string `json:"roles,omitempty"`
	Scp               string   `json:"scp,omitempty"`
	Sub               string   `json:"sub"`
	Tid               string   `json:"tid"`
	Upn               string   `json:"upn,omitempty"`
	Ver               string   `json:"ver"`
}

// idClaims are the claims of an id token.
type idClaims struct {
	Aud               string `json:"aud"`
	Iss               string `json:"iss"`
	Iat               int64  `json:"iat"`
	Nbf               int64  `json:"nbf"`
	Exp               int64  `json:"exp"`
	Email             string `json:"email"`
	Name              string `json:"name"`
	Nonce             string `json:"nonce,omitempty"`
	Oid               string `json:"oid"`
	PreferredUsername string `json:"preferred_username"`
	Sub               string `json:"sub"`
	Tid               string `json:"tid"`
	Upn               string `json:"upn"`
	Ver               string `json:"ver"`
}

// lifetimeSeconds converts a lifetime to expires_in: sub-second positive
// lifetimes become 1, non-positive ones at most -1 (0 would read as "no
// expiry" to clients).
func lifetimeSeconds(d time.Duration) int64 {
	s := int64(d / time.Second)
	switch {
	case d > 0 && s == 0:
		return 1
	case d <= 0 && s == 0:
		return -1
	}
	return s
}

func (p *IdP) accessToken(g tokenGrant, now time.Time, ttl time.Duration) string {
	c := accessClaims{
		Aud:   g.scopes.audience(),
		Iss:   p.opts.Issuer,
		Iat:   now.Unix(),
		Nbf:   now.Unix(),
		Exp:   now.Unix() + lifetimeSeconds(ttl),
		AppID: g.clientID,
		Tid:   p.tenantID,
		Ver:   "2.0",
	}
	if g.user == "" {
		c.Sub = g.clientID
		c.Oid = p.objectID("app " + g.clientID)
		c.Roles = outlookAppRoles()
		c.Email, c.Upn, c.PreferredUsername = p.opts.AppTokenEmail, p.opts.AppTokenEmail, p.opts.AppTokenEmail
	} else {
		c.Sub = p.subject(g.user)
		c.Oid = p.objectID(g.user)
		c.Scp = g.scopes.scp()
		c.Name = displayName(g.user)
		c.Email, c.Upn, c.PreferredUsername = g.user, g.user, g.user
	}
	return p.sign(c)
}

func (p *IdP) idToken(g tokenGrant, now time.Time) string {
	return p.sign(idClaims{
		Aud:               g.clientID,
		Iss:               p.opts.Issuer,
		Iat:               now.Unix(),
		Nbf:               now.Unix(),
		Exp:               now.Add(idTokenLifetime).Unix(),
		Email:             g.user,
		Name:              displayName(g.user),
		Nonce:             g.nonce,
		Oid:               p.objectID(g.user),
		PreferredUsername: g.user,
		Sub:               p.subject(g.user),
		Tid:               p.tenantID,
		Upn:               g.user,
		Ver:               "2.0",
	})
}

// sign encodes claims as an HS256 JWT (RFC 7519, RFC 7515 §3.1 compact form).
func (p *IdP) sign(claims any) string {
	body, err := json.Marshal(claims)
	if err != nil {
		panic("testidp: encoding claims: " + err.Error()) // claims are plain structs
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString([]byte(jwtHeader)) + "." + enc.EncodeToString(body)
	mac := hmac.New(sha256.New, p.opts.SigningKey)
	mac.Write([]byte(input))
	return input + "." + enc.EncodeToString(mac.Sum(nil))
}
