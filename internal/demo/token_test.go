package demo

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/testidp"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

// signJWT builds a compact HS256-style JWT with the given header and claims
// JSON, signed with key.
func signJWT(key []byte, header, claims string) string {
	enc := base64.RawURLEncoding
	input := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(claims))
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(input))
	return input + "." + enc.EncodeToString(mac.Sum(nil))
}

func TestVerifyIdPTokens(t *testing.T) {
	idp := testidp.New(t, testidp.Options{})
	v := tokenVerifier{key: idp.SigningKey(), now: time.Now}
	good := idp.MintAccessToken(Identity, time.Hour)
	if err := v.verify(Identity, good); err != nil {
		t.Fatalf("a fresh token of the identity provider: %v", err)
	}
	if err := v.verify(strings.ToUpper(Identity), good); err != nil {
		t.Errorf("user compared case-sensitively: %v", err)
	}
	if err := v.verify("other@contoso.test", good); !errors.Is(err, errTokenUser) {
		t.Errorf("token for another user = %v, want errTokenUser", err)
	}
	if err := v.verify(Identity, idp.MintAccessToken(Identity, -time.Hour)); !errors.Is(err, errTokenExpired) {
		t.Errorf("expired token = %v, want errTokenExpired", err)
	}
	other := tokenVerifier{key: testKey, now: time.Now}
	if err := other.verify(Identity, good); !errors.Is(err, errTokenSignature) {
		t.Errorf("token checked with another key = %v, want errTokenSignature", err)
	}
	if err := v.verify(Identity, good[:len(good)-2]+"AA"); !errors.Is(err, errTokenSignature) && !errors.Is(err, errTokenMalformed) {
		t.Errorf("tampered signature = %v, want a rejection", err)
	}
}

func TestVerifyClaims(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	v := tokenVerifier{key: testKey, now: func() time.Time { return now }}
	const hs = `{"alg":"HS256","typ":"JWT"}`
	claims := func(aud, upn, scp string, exp int64) string {
		return `{"aud":"` + aud + `","upn":"` + upn + `","scp":"` + scp + `","nbf":1799999000,"exp":` +
			strconv.FormatInt(exp, 10) + `}`
	}
	const aud, scp = "https://outlook.office.com", "IMAP.AccessAsUser.All SMTP.Send"
	tests := []struct {
		name, token string
		want        error
	}{
		{"good", signJWT(testKey, hs, claims(aud, Identity, scp, 1_800_000_600)), nil},
		{"aud with slash", signJWT(testKey, hs, claims(aud+"/", Identity, scp, 1_800_000_600)), nil},
		{"within skew", signJWT(testKey, hs, claims(aud, Identity, scp, 1_799_999_990)), nil},
		{"expired", signJWT(testKey, hs, claims(aud, Identity, scp, 1_799_999_000)), errTokenExpired},
		{"graph audience", signJWT(testKey, hs, claims("00000003-0000-0000-c000-000000000000", Identity, scp, 1_800_000_600)), errTokenAudience},
		{"other user", signJWT(testKey, hs, claims(aud, "eve@contoso.test", scp, 1_800_000_600)), errTokenUser},
		{"no mail scope", signJWT(testKey, hs, claims(aud, Identity, "User.Read", 1_800_000_600)), errTokenScope},
		{"preferred_username", signJWT(testKey, hs, `{"aud":"`+aud+`","preferred_username":"`+Identity+`","scp":"SMTP.Send","exp":1800000600}`), nil},
		{"not yet valid", signJWT(testKey, hs, `{"aud":"`+aud+`","upn":"`+Identity+`","scp":"SMTP.Send","nbf":1800000600,"exp":1800001200}`), errTokenExpired},
		{"alg none", signJWT(testKey, `{"alg":"none"}`, claims(aud, Identity, scp, 1_800_000_600)), errTokenMalformed},
		{"claims not json", signJWT(testKey, hs, `not json`), errTokenMalformed},
		{"two parts", "a.b", errTokenMalformed},
		{"bad base64 signature", "e30.e30.!!", errTokenMalformed},
		{"too long", strings.Repeat("a", maxTokenBytes+1), errTokenMalformed},
		{"empty", "", errTokenMalformed},
	}
	for _, tt := range tests {
		if err := v.verify(Identity, tt.token); !errors.Is(err, tt.want) {
			t.Errorf("%s: verify = %v, want %v", tt.name, err, tt.want)
		}
	}
}

// FuzzVerifyToken checks that no input panics the verifier and that only
// tokens signed with the key are accepted.
func FuzzVerifyToken(f *testing.F) {
	f.Add(signJWT(testKey, `{"alg":"HS256"}`, `{"aud":"https://outlook.office.com","upn":"demo@contoso.test","scp":"SMTP.Send","exp":1800000600}`))
	now := time.Unix(1_800_000_000, 0)
	v := tokenVerifier{key: testKey, now: func() time.Time { return now }}
	f.Fuzz(func(t *testing.T, token string) {
		err := v.verify(Identity, token)
		if err != nil {
			return
		}
		parts := strings.Split(token, ".")
		if len(parts) != 3 {
			t.Fatalf("accepted %q, which has %d parts", token, len(parts))
		}
		sig, err := base64.RawURLEncoding.DecodeString(parts[2])
		mac := hmac.New(sha256.New, testKey)
		mac.Write([]byte(parts[0] + "." + parts[1]))
		if err != nil || !bytes.Equal(sig, mac.Sum(nil)) {
			t.Fatalf("accepted %q, which is not signed with the key", token)
		}
	})
}
