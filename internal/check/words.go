package check

import (
	"fmt"
	"strings"
	"time"
)

// Plural writes "1 account" or "3 accounts".
func Plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// When prints a time with how far it is from now, "-" when zero:
// "2026-01-02 15:04 (in 55m)".
func When(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := t.Sub(now).Round(time.Minute)
	rel := "now"
	switch {
	case d > 0:
		rel = "in " + shortDuration(d)
	case d < 0:
		rel = shortDuration(-d) + " ago"
	}
	return t.Local().Format("2006-01-02 15:04") + " (" + rel + ")"
}

// shortDuration prints 1h5m as "1h5m" and 3m0s as "3m".
func shortDuration(d time.Duration) string {
	s := strings.TrimSuffix(d.String(), "0s")
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
