package imapfront

import (
	"strings"

	"github.com/xoauthd/xoauthd/proxy"
)

// RedactLine returns a client command line fit for a protocol trace: the
// arguments of LOGIN and the initial response of AUTHENTICATE are replaced
// by "***"; other lines are returned unchanged. A trace must also write
// "***" for what it cannot see here: the literals of a LOGIN and the client
// lines that answer an AUTHENTICATE continuation request.
func RedactLine(line string) string {
	tag, rest, ok := strings.Cut(line, " ")
	if !ok {
		return line
	}
	name, args, ok := strings.Cut(rest, " ")
	if !ok {
		return line
	}
	switch strings.ToUpper(name) {
	case "LOGIN":
		return tag + " " + name + " " + proxy.Redacted
	case "AUTHENTICATE":
		mech, _, hasIR := strings.Cut(args, " ")
		if !hasIR {
			return line
		}
		return tag + " " + name + " " + mech + " " + proxy.Redacted
	}
	return line
}

// traceRedactor is the proxy.Redactor of one IMAP connection's protocol
// trace, on the client side as on the upstream side. From a LOGIN or
// AUTHENTICATE command to its tagged reply (or a BYE) every further command
// line is credentials, whatever it looks like (literal contents, SASL
// responses, a cancelling "*", a password with CRLF in a literal, commands
// pipelined behind the login): they are all shown as "***", and so are the
// payloads of continuation requests (SASL challenges, the XOAUTH2 error
// challenge). Outside an exchange lines are shown as they are.
//
// The command is looked for in the first two words, so that a line without
// a tag or with extra spaces is hidden too: the front answers it BAD, but
// the trace has already seen it.
type traceRedactor struct {
	inAuth  bool   // a LOGIN or AUTHENTICATE is in progress
	authTag string // its tag (its first word)
}

// Command implements proxy.Redactor.
func (r *traceRedactor) Command(line string) string {
	if r.inAuth {
		return proxy.Redacted
	}
	words := strings.Fields(line)
	for i := 0; i < len(words) && i < 2; i++ {
		keep := i + 1 // LOGIN: nothing after the command name
		switch strings.ToUpper(words[i]) {
		case "AUTHENTICATE":
			keep++ // the mechanism name
		case "LOGIN":
		default:
			continue
		}
		r.inAuth, r.authTag = true, words[0]
		if len(words) <= keep {
			return strings.Join(words, " ")
		}
		return strings.Join(words[:keep], " ") + " " + proxy.Redacted
	}
	return line
}

// Reply implements proxy.Redactor.
func (r *traceRedactor) Reply(line string) string {
	if !r.inAuth {
		return line
	}
	if strings.HasPrefix(line, "+") {
		return proxy.RedactChallenge("+", line)
	}
	if strings.HasPrefix(line, r.authTag+" ") || isBye(line) {
		r.inAuth = false
	}
	return line
}

// isBye reports whether line is an untagged BYE, which ends the session.
func isBye(line string) bool {
	rest, ok := strings.CutPrefix(line, "* ")
	return ok && len(rest) >= 3 && strings.EqualFold(rest[:3], "BYE")
}
