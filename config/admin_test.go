package config

import (
	"strings"
	"testing"
)

// TestAdminPasswordHash: admin.password_hash turns the console on; it must
// be an argon2id hash and needs admin.listen.
func TestAdminPasswordHash(t *testing.T) {
	tests := []struct {
		name, admin string
		problem     string // "" when valid
	}{
		{"console on", "admin:\n  listen: 127.0.0.1:9925\n  password_hash: " + testHash + "\n", ""},
		{"console off", "admin:\n  listen: 127.0.0.1:9925\n", ""},
		{"not argon2id", "admin:\n  listen: 127.0.0.1:9925\n  password_hash: secret\n", "not a valid argon2id PHC string"},
		{"no listen", "admin:\n  password_hash: " + testHash + "\n", "needs admin.listen"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, ps, _ := parseIn(t, tc.admin+validYAML)
			if tc.problem == "" {
				if len(ps) != 0 {
					t.Fatalf("problems %v", ps)
				}
				if (cfg.Admin.PasswordHash != "") != strings.Contains(tc.admin, "password_hash") {
					t.Fatalf("password_hash %q", cfg.Admin.PasswordHash)
				}
				return
			}
			if len(ps) != 1 || ps[0].Path != "admin.password_hash" || !strings.Contains(ps[0].Msg, tc.problem) {
				t.Fatalf("problems %v, want one at admin.password_hash containing %q", ps, tc.problem)
			}
			if strings.Contains(ps.Error(), "secret") {
				t.Errorf("the problem repeats the value: %v", ps)
			}
		})
	}
}
