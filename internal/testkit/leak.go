package testkit

import "strings"

// LeakWindow is the length of the secret pieces Leaked looks for: long
// enough not to match by chance, short enough to catch a secret cut in a
// line.
const LeakWindow = 20

// Leaked reports whether out (a log, a page, headers) holds secret whole
// or a piece of it of LeakWindow bytes, so that a secret cut at a line's
// end or wrapped in other text is still found, and which.
func Leaked(out, secret string) (string, bool) {
	if strings.Contains(out, secret) {
		return secret, true
	}
	for i := 0; i+LeakWindow <= len(secret); i += LeakWindow / 2 {
		if piece := secret[i : i+LeakWindow]; strings.Contains(out, piece) {
			return piece, true
		}
	}
	return "", false
}
