package check

import (
	"strings"
	"testing"
	"time"
)

func TestWhen(t *testing.T) {
	now := time.Date(2026, 3, 4, 10, 0, 0, 0, time.Local)
	tests := map[time.Time]string{
		{}:                                "-",
		now.Add(75 * time.Minute):         "(in 1h15m)",
		now.Add(10 * time.Minute):         "(in 10m)",
		now.Add(-2 * time.Hour):           "(2h ago)",
		now.Add(20 * time.Second):         "(now)",
		now.Add(49*time.Hour + time.Hour): "(in 50h)",
	}
	for at, want := range tests {
		if got := When(at, now); !strings.Contains(got, want) {
			t.Errorf("When(%v) = %q, want it to contain %q", at, got, want)
		}
	}
}

func TestPlural(t *testing.T) {
	for n, want := range map[int]string{0: "0 steps", 1: "1 step", 2: "2 steps"} {
		if got := Plural(n, "step"); got != want {
			t.Errorf("Plural(%d) = %q, want %q", n, got, want)
		}
	}
}
