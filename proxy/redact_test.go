package proxy

import (
	"strings"
	"testing"
)

func TestRedactAuth(t *testing.T) {
	tests := []struct {
		line, shown string
		starts      bool
	}{
		{"AUTH", "AUTH", false},
		{"  auth  ", "  auth  ", false},
		{"AUTH PLAIN", "AUTH PLAIN", true},
		{"auth  login", "auth login", true},
		{"AUTH PLAIN AGFsaWNlAHNlY3JldA==", "AUTH PLAIN ***", true},
		{"AUTH XOAUTH2 dXNlcj0= extra", "AUTH XOAUTH2 ***", true},
	}
	for _, tt := range tests {
		shown, starts := RedactAuth(tt.line, strings.Fields(tt.line))
		if shown != tt.shown || starts != tt.starts {
			t.Errorf("RedactAuth(%q) = %q, %v; want %q, %v", tt.line, shown, starts, tt.shown, tt.starts)
		}
	}
}

func TestRedactChallenge(t *testing.T) {
	tests := []struct{ code, line, want string }{
		{"+", "+", "+"},
		{"+", "+ ", "+ "},
		{"+", "+ VXNlcm5hbWU6", "+ ***"},
		{"+", "+eyJzdGF0dXMiOiI0MDEifQ==", "+ ***"},
		{"334", "334 ", "334 "},
		{"334", "334 UGFzc3dvcmQ6", "334 ***"},
	}
	for _, tt := range tests {
		if got := RedactChallenge(tt.code, tt.line); got != tt.want {
			t.Errorf("RedactChallenge(%q, %q) = %q, want %q", tt.code, tt.line, got, tt.want)
		}
	}
}
