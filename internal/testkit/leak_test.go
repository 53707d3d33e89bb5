package testkit

import "testing"

func TestLeaked(t *testing.T) {
	secret := "0123456789abcdefghijklmnopqrstuvwxyz0123456789"
	tests := []struct {
		out  string
		want bool
	}{
		{"before " + secret + " after", true},
		{"cut: " + secret[:25], true},
		{"cut: " + secret[17:40], true},
		{"only " + secret[:15], false},
		{"nothing here", false},
	}
	for _, tc := range tests {
		if _, got := Leaked(tc.out, secret); got != tc.want {
			t.Errorf("Leaked(%q) = %v, want %v", tc.out, got, tc.want)
		}
	}
}
