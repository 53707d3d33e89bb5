package imapfront

import "strings"

// redacted replaces secrets in logged protocol lines.
const redacted = "***"

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
		return tag + " " + name + " " + redacted
	case "AUTHENTICATE":
		mech, _, hasIR := strings.Cut(args, " ")
		if !hasIR {
			return line
		}
		return tag + " " + name + " " + mech + " " + redacted
	}
	return line
}
