package memupstream

import (
	"bytes"
	"errors"
	"strings"
)

// Limits of a POP3 command line (RFC 1939 §3, RFC 2449 §4).
const (
	// maxPOP3Args is the most arguments a command takes (TOP msg n, AUTH
	// mechanism initial-response).
	maxPOP3Args = 2
	// maxPOP3MsgNum bounds a message number's digits: no maildrop here
	// holds a billion messages, and the value must fit an int.
	maxPOP3MsgNum = 9
)

// pop3Command is one parsed command line.
type pop3Command struct {
	name string   // the keyword, upper-cased
	args []string // the arguments as sent
}

// Errors of parsePOP3Command.
var (
	errPOP3Empty    = errors.New("empty command")
	errPOP3Control  = errors.New("control character in command")
	errPOP3Keyword  = errors.New("keyword is not 3 or 4 letters")
	errPOP3ArgCount = errors.New("too many arguments")
)

// parsePOP3Command parses a command line without its CRLF (RFC 1939 §3): a
// case-insensitive keyword of three or four letters, then arguments
// separated by spaces. Runs of spaces and a trailing space are accepted, as
// clients send them; any other control character is not.
func parsePOP3Command(line []byte) (pop3Command, error) {
	for _, b := range line {
		if b < ' ' || b == 0x7f {
			return pop3Command{}, errPOP3Control
		}
	}
	fields := strings.Fields(string(line))
	if len(fields) == 0 {
		return pop3Command{}, errPOP3Empty
	}
	name := fields[0]
	if len(name) < 3 || len(name) > 4 {
		return pop3Command{}, errPOP3Keyword
	}
	for i := 0; i < len(name); i++ {
		if c := name[i] | 0x20; c < 'a' || c > 'z' {
			return pop3Command{}, errPOP3Keyword
		}
	}
	args := fields[1:]
	if len(args) > maxPOP3Args {
		return pop3Command{}, errPOP3ArgCount
	}
	if len(args) == 0 {
		args = nil
	}
	return pop3Command{name: strings.ToUpper(name), args: args}, nil
}

// parseMsgNum parses a message number: decimal digits, 1 or more.
func parseMsgNum(s string) (int, bool) {
	n, ok := parseDecimal(s)
	return n, ok && n > 0
}

// parseDecimal parses up to maxPOP3MsgNum decimal digits.
func parseDecimal(s string) (int, bool) {
	if s == "" || len(s) > maxPOP3MsgNum {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}

// trimEOL removes a trailing LF or CRLF.
func trimEOL(line []byte) []byte {
	line = bytes.TrimSuffix(line, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r"))
}
