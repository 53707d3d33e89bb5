// Package leak finds secrets in what a test collected (logs, pages,
// headers): a secret counts as leaked when it appears whole or when any
// piece of it of Window bytes does, so that a secret cut at a line's end
// or wrapped in other text is still found. It is for tests only.
package leak

import "strings"

// Window is the length of the secret pieces looked for: long enough not
// to match by chance, short enough to catch a secret cut in a line.
const Window = 20

// Find reports whether out holds secret or a piece of it of Window bytes,
// and which.
func Find(out, secret string) (string, bool) {
	if strings.Contains(out, secret) {
		return secret, true
	}
	for i := 0; i+Window <= len(secret); i += Window / 2 {
		if piece := secret[i : i+Window]; strings.Contains(out, piece) {
			return piece, true
		}
	}
	return "", false
}
