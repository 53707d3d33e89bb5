package tokens

import (
	"testing"
	"time"
)

// FuzzParseRetryAfter checks that any Retry-After value gives a wait in
// [0, maxRetryAfter]: a server cannot make xoauthd wait forever, or less
// than not at all.
func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"", "0", "3", "-5", "120", "9223372036854775807", "99999999999999999999",
		"Wed, 21 Oct 2015 07:28:00 GMT", "Sun, 06 Nov 2094 08:49:37 GMT", "soon", " 7 "} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		if d := parseRetryAfter(v, now); d < 0 || d > maxRetryAfter {
			t.Fatalf("parseRetryAfter(%q) = %v, want within [0, %v]", v, d, maxRetryAfter)
		}
	})
}
