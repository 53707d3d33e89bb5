package config

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong with a configuration: where (the YAML path,
// like accounts[2].provider, and the line when known) and what, with a hint
// on how to fix it. Msg never contains the value of a secret.
type Problem struct {
	Path string // YAML path; "" for the file as a whole
	Line int    // 1-based line; 0 when unknown (a Config built in code)
	Msg  string
}

// String renders the problem as `accounts[2].provider (line 41): unknown
// provider "m356"; known: m365`.
func (p Problem) String() string {
	switch {
	case p.Path != "" && p.Line > 0:
		return fmt.Sprintf("%s (line %d): %s", p.Path, p.Line, p.Msg)
	case p.Path != "":
		return p.Path + ": " + p.Msg
	case p.Line > 0:
		return fmt.Sprintf("line %d: %s", p.Line, p.Msg)
	default:
		return p.Msg
	}
}

// maxProblems bounds how many problems one load reports; a file that is
// wrong everywhere gets the first ones and a count of the rest.
const maxProblems = 100

// Problems is every problem found in a configuration. It is the error type
// returned by Parse, Load and Validate; use errors.As to get at the list.
type Problems []Problem

// Error renders the problems one per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// err returns ps as an error, or nil when there are none.
func (ps Problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// capped returns ps cut to maxProblems, plus dropped problems that were
// never recorded, with a last entry counting what was left out.
func (ps Problems) capped(dropped int) Problems {
	if len(ps) > maxProblems {
		dropped += len(ps) - maxProblems
		ps = ps[:maxProblems]
	}
	if dropped > 0 {
		ps = append(ps, Problem{Msg: fmt.Sprintf("... and %d more problems; fix these first", dropped)})
	}
	return ps
}

// sortByLine orders problems by line, keeping the order of equal lines and
// putting those without a line last.
func (ps Problems) sortByLine() {
	sort.SliceStable(ps, func(i, j int) bool {
		li, lj := ps[i].Line, ps[j].Line
		if li == 0 || lj == 0 {
			return li != 0 && lj == 0
		}
		return li < lj
	})
}

// under reports whether path is prefix or lies below it in the YAML tree.
func under(path, prefix string) bool {
	if prefix == "" || path == prefix {
		return true
	}
	rest, ok := strings.CutPrefix(path, prefix)
	return ok && (rest[0] == '.' || rest[0] == '[')
}

// parentPath returns the path one level up: accounts[2].provider →
// accounts[2] → accounts → "".
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}
