package testidp

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// Sizes of generated secrets.
const (
	opaqueTokenBytes = 48 // authorization codes, refresh tokens, device codes
	userCodeLen      = 9
	// userCodeAlphabet has 32 letters and digits without look-alikes, so a
	// random byte masked to 5 bits picks one without bias.
	userCodeAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
)

// user is a directory account. Refresh tokens remember the epochs current
// at issue; RevokeUser and RequireMFA bump them.
type user struct {
	email       string // lower-case
	revokeEpoch int
	mfaEpoch    int
}

// userLocked returns the user, adding it when missing. p.mu must be held.
func (p *IdP) userLocked(email string) *user {
	email = strings.ToLower(email)
	u := p.users[email]
	if u == nil {
		u = &user{email: email}
		p.users[email] = u
	}
	return u
}

// knownUserLocked reports whether email is in the directory. p.mu must be held.
func (p *IdP) knownUserLocked(email string) bool {
	_, ok := p.users[strings.ToLower(email)]
	return ok
}

// formatGUID renders 16 bytes as a GUID string, marking it as an RFC 9562
// version 8 (custom) UUID.
func formatGUID(b []byte) string {
	b[6] = b[6]&0x0f | 0x80
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:16])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func randomGUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return formatGUID(b)
}

// derivedGUID is a stable GUID for a name, so tenant and object ids survive
// restarts of the IdP.
func derivedGUID(kind, name string) string {
	sum := sha256.Sum256([]byte("testidp " + kind + " " + name))
	return formatGUID(sum[:16])
}

func tenantGUID(tenant string) string { return derivedGUID("tenant", tenant) }

// objectID is the oid claim of a user or service principal.
func (p *IdP) objectID(name string) string {
	return derivedGUID("object "+p.tenantID, strings.ToLower(name))
}

// subject is the pairwise sub claim of a user.
func (p *IdP) subject(email string) string {
	sum := sha256.Sum256([]byte("testidp sub " + p.tenantID + " " + strings.ToLower(email)))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// displayName makes a name claim from an address: "alice.smith@…" → "Alice Smith".
func displayName(email string) string {
	local, _, _ := strings.Cut(email, "@")
	parts := strings.FieldsFunc(local, func(r rune) bool { return r == '.' || r == '_' || r == '-' })
	for i, s := range parts {
		parts[i] = strings.ToUpper(s[:1]) + s[1:]
	}
	return strings.Join(parts, " ")
}

func looksLikeGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return false
			}
		}
	}
	return true
}

// opaqueToken looks like Microsoft's opaque codes and refresh tokens
// ("0.A…"): a prefix and base64url randomness.
func opaqueToken(prefix string) string {
	b := make([]byte, opaqueTokenBytes)
	_, _ = rand.Read(b)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

func randomUserCode() string {
	b := make([]byte, userCodeLen)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = userCodeAlphabet[b[i]&31]
	}
	return string(b)
}
