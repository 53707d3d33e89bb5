package testkit

import (
	"strings"
	"testing"
)

// Redactor decides what a protocol trace shows of each line, as
// proxy.Redactor does.
type Redactor interface {
	Command(line string) string
	Reply(line string) string
}

// TraceStep is one line of a traced dialogue and what the trace must show
// of it: {line, shown}, where line is a client command after "> " or a
// server reply after "< ". (An array, so that tables list steps unkeyed.)
type TraceStep [2]string

// TraceSteps passes each step's line through r in order, as a command or
// a reply, and fails t where r shows it otherwise than the step wants.
func TraceSteps(t testing.TB, r Redactor, steps []TraceStep) {
	t.Helper()
	for _, s := range steps {
		in, want := s[0], s[1]
		var got string
		if line, ok := strings.CutPrefix(in, "> "); ok {
			got = r.Command(line)
		} else {
			got = r.Reply(strings.TrimPrefix(in, "< "))
		}
		if got != want {
			t.Errorf("%q shown as %q, want %q", in, got, want)
		}
	}
}
