package imapfront

import "strings"

// maxIDPairs bounds the field-value pairs of ID (RFC 2971 §3.3: 30).
const maxIDPairs = 30

// idResponse is what ID answers (RFC 2971 §3.2); the client's ID is never
// forwarded upstream.
const idResponse = `* ID ("name" "xoauthd")`

// capability answers CAPABILITY (RFC 3501 §6.1.1).
func (s *session) capability(cmd *command) bool {
	if len(cmd.args) != 0 {
		return s.badf(cmd.tag, "CAPABILITY takes no arguments")
	}
	return s.writeLine("* CAPABILITY "+s.caps()) == nil &&
		s.writeLine(cmd.tag+" OK CAPABILITY completed") == nil
}

// noop answers NOOP (RFC 3501 §6.1.2).
func (s *session) noop(cmd *command) bool {
	if len(cmd.args) != 0 {
		return s.badf(cmd.tag, "NOOP takes no arguments")
	}
	return s.writeLine(cmd.tag+" OK NOOP completed") == nil
}

// logout answers LOGOUT (RFC 3501 §6.1.3) and ends the session.
func (s *session) logout(cmd *command) bool {
	if len(cmd.args) != 0 {
		return s.badf(cmd.tag, "LOGOUT takes no arguments")
	}
	if s.writeLine("* BYE Logging out") == nil {
		_ = s.writeLine(cmd.tag + " OK LOGOUT completed")
	}
	return false
}

// id answers ID (RFC 2971) with our name; the client's list is logged.
func (s *session) id(cmd *command) bool {
	fields, ok := idFields(cmd.args)
	if !ok {
		return s.badf(cmd.tag, "Invalid ID arguments")
	}
	if len(fields) > 0 {
		s.log.Debug("client id", "id", strings.Join(fields, " "))
	}
	return s.writeLine(idResponse) == nil && s.writeLine(cmd.tag+" OK ID completed") == nil
}

// idFields checks the arguments of ID, NIL or a list of string pairs
// (values may be NIL), and returns the list's items.
func idFields(args []arg) ([]string, bool) {
	if len(args) == 1 && args[0].kind == argAtom && strings.EqualFold(args[0].s, "NIL") {
		return nil, true
	}
	if len(args) < 2 || args[0].kind != argOpen || args[len(args)-1].kind != argClose {
		return nil, false
	}
	inner := args[1 : len(args)-1]
	if len(inner)%2 != 0 || len(inner) > 2*maxIDPairs {
		return nil, false
	}
	fields := make([]string, 0, len(inner))
	for i, a := range inner {
		switch {
		case !a.isString():
			return nil, false
		case a.kind == argAtom && !strings.EqualFold(a.s, "NIL"):
			return nil, false // RFC 2971 §4: fields are strings, values strings or NIL
		case a.kind == argAtom && i%2 == 0:
			return nil, false
		}
		fields = append(fields, a.s)
	}
	return fields, true
}
