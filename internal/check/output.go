package check

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Layout of the text report.
const (
	checkWidth  = 80 // the report fits a terminal this wide
	checkIndent = 12 // column where a step's text starts: "  ✓ config  "
)

// ANSI colours, used only on a terminal.
const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiGreen  = "\x1b[32m"
	ansiRed    = "\x1b[31m"
	ansiYellow = "\x1b[33m"
)

// WriteJSON prints the report for scripts: indented JSON, the format of
// "xoauthd check --json" and of the console's download.
func WriteJSON(w io.Writer, r Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(r)
}

// WriteText prints the report for people: one block per account, one line
// per step with ✓ (passed), ✗ (failed) or – (skipped), the cause and fix
// under a failed step, and a last line with the failures. With colour the
// marks and headings get ANSI colours (for a terminal).
func WriteText(w io.Writer, r Report, colour bool) {
	p := &textPrinter{w: w, colour: colour}
	p.para(0, fmt.Sprintf("xoauthd check: %s in %s", Plural(len(r.Accounts), "account"), r.Config))
	var failures []string
	for _, a := range r.Accounts {
		fmt.Fprintln(w)
		head := a.Login + ": identity " + a.Identity
		if !strings.EqualFold(a.Mailbox, a.Identity) {
			head += ", mailbox " + a.Mailbox
		}
		p.para(0, p.paint(ansiBold, head+", provider "+a.Provider))
		for _, s := range a.Steps {
			p.step(s)
			if s.Status == StatusFail {
				failures = append(failures, a.Login+" "+s.Name)
			}
		}
	}
	fmt.Fprintln(w)
	if len(failures) == 0 {
		p.para(0, "Every step that ran passed.")
		return
	}
	p.para(0, fmt.Sprintf("%s failed: %s.", Plural(len(failures), "step"), strings.Join(failures, ", ")))
}

// textPrinter writes wrapped, optionally coloured lines.
type textPrinter struct {
	w      io.Writer
	colour bool
}

func (p *textPrinter) paint(code, s string) string {
	if !p.colour {
		return s
	}
	return code + s + ansiReset
}

// step prints one step: its mark and name, the summary, for a failure the
// cause, the fix and the server's reply, then the details.
func (p *textPrinter) step(s Step) {
	mark := map[string]string{StatusPass: p.paint(ansiGreen, "✓"), StatusFail: p.paint(ansiRed, "✗"),
		StatusSkip: p.paint(ansiYellow, "–")}[s.Status]
	lines := wrap(s.Summary, checkWidth-checkIndent)
	fmt.Fprintf(p.w, "  %s %-*s%s\n", mark, checkIndent-4, s.Name, first(lines))
	p.rest(lines)
	if e := s.Problem; e != nil {
		p.para(checkIndent, e.Summary()+".")
		p.para(checkIndent, p.paint(ansiBold, "Fix:")+" "+e.Fix)
		if s.Reply != "" && !strings.Contains(e.Cause, s.Reply) {
			p.para(checkIndent, "Server reply: "+s.Reply)
		}
	}
	for _, d := range s.Details {
		p.para(checkIndent, d)
	}
}

// para prints text wrapped to the report width at indent.
func (p *textPrinter) para(indent int, text string) {
	lines := wrap(text, checkWidth-indent)
	for _, l := range lines {
		fmt.Fprintf(p.w, "%*s%s\n", indent, "", l)
	}
}

// rest prints the lines after the first at the step indent.
func (p *textPrinter) rest(lines []string) {
	for _, l := range lines[min(1, len(lines)):] {
		fmt.Fprintf(p.w, "%*s%s\n", checkIndent, "", l)
	}
}

func first(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return lines[0]
}

// wrap breaks text into lines of at most width characters at spaces. A
// `quoted command` stays on one line when it fits in width; a word longer
// than width gets a line of its own. Colour codes count as no width.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, tok := range wrapTokens(text, width) {
		switch {
		case line == "":
			line = tok
		case visibleLen(line)+1+visibleLen(tok) <= width:
			line += " " + tok
		default:
			lines = append(lines, line)
			line = tok
		}
	}
	if line != "" || len(lines) == 0 {
		lines = append(lines, line)
	}
	return lines
}

// wrapTokens splits text at spaces, keeping a backquoted span that fits in
// width together.
func wrapTokens(text string, width int) []string {
	words := strings.Fields(text)
	var out []string
	for i := 0; i < len(words); i++ {
		if strings.HasPrefix(words[i], "`") && strings.Count(words[i], "`") == 1 {
			if end, span, ok := backquoted(words, i, width); ok {
				out, i = append(out, span), end
				continue
			}
		}
		out = append(out, words[i])
	}
	return out
}

// backquoted joins words[i:] up to the word with the closing backquote,
// when the span fits in width.
func backquoted(words []string, i, width int) (end int, span string, ok bool) {
	span = words[i]
	for j := i + 1; j < len(words); j++ {
		span += " " + words[j]
		if visibleLen(span) > width {
			return 0, "", false
		}
		if strings.Contains(words[j], "`") {
			return j, span, true
		}
	}
	return 0, "", false
}

// visibleLen is the width of s on a terminal: runes, without ANSI codes.
func visibleLen(s string) int {
	n := 0
	for i := 0; i < len(s); {
		if s[i] == 0x1b {
			end := strings.IndexByte(s[i:], 'm')
			if end < 0 {
				break
			}
			i += end + 1
			continue
		}
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
		n++
	}
	return n
}
