package tokens

import (
	"encoding/base64"
	"strings"
	"testing"
)

func jwtWith(payload string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"none"}`)) + "." + enc.EncodeToString([]byte(payload)) + ".sig"
}

func TestParseIDToken(t *testing.T) {
	tests := []struct {
		name     string
		raw      string
		identity string
		match    bool
		first    string
		wantErr  bool
	}{
		{"preferred_username", jwtWith(`{"preferred_username":"Alice@Contoso.com"}`), "alice@contoso.com", true, "Alice@Contoso.com", false},
		{"upn only", jwtWith(`{"upn":"alice@contoso.com"}`), "ALICE@contoso.com", true, "alice@contoso.com", false},
		{"email only", jwtWith(`{"email":"alice@gmail.com"}`), "alice@gmail.com", true, "alice@gmail.com", false},
		{"other user", jwtWith(`{"preferred_username":"bob@contoso.com","email":"bob@contoso.com"}`), "alice@contoso.com", false, "bob@contoso.com", false},
		{"any claim may match", jwtWith(`{"preferred_username":"alias@contoso.com","upn":"alice@contoso.com"}`), "alice@contoso.com", true, "alias@contoso.com", false},
		{"padded payload", strings.Replace(jwtWith(`{"upn":"a@b"}`), ".sig", "", 1) + "=.sig", "a@b", true, "a@b", false},
		{"no claims", jwtWith(`{}`), "a@b", false, "", false},
		{"two parts", "a.b", "", false, "", true},
		{"bad base64", "a.!!!.c", "", false, "", true},
		{"not json", jwtWith(`nope`), "", false, "", true},
		{"too large", strings.Repeat("a", maxIDToken+1), "", false, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseIDToken(tc.raw)
			if tc.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.matches(tc.identity); got != tc.match {
				t.Errorf("matches(%q) = %v", tc.identity, got)
			}
			names := c.names()
			if tc.first == "" && len(names) != 0 || tc.first != "" && (len(names) == 0 || names[0] != tc.first) {
				t.Errorf("names %v, want first %q", names, tc.first)
			}
		})
	}
}

func FuzzParseIDToken(f *testing.F) {
	f.Add(jwtWith(`{"preferred_username":"a@b"}`))
	f.Add("..")
	f.Add("a.b.c.d")
	f.Add(jwtWith(`{"upn":5}`))
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := parseIDToken(raw)
		if err != nil {
			return
		}
		for _, n := range c.names() {
			if !c.matches(n) {
				t.Fatalf("claims do not match their own name %q", n)
			}
		}
	})
}
