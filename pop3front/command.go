package pop3front

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// maxLine bounds every line read from the client before login, CRLF
// included. RFC 2449 §4 limits commands to 255 octets; the headroom is for
// AUTH PLAIN and AUTH LOGIN responses, which carry base64 of long passwords.
// The client's buffered reader has exactly this size and never grows.
const maxLine = 1024

// errLineTooLong is returned by readLine when no line end arrives within the
// reader's buffer.
var errLineTooLong = errors.New("line too long")

// readLine returns the next line from r without its LF and an optional CR
// before it. The line is bounded by r's buffer size: a longer line is
// errLineTooLong. The returned slice is only valid until the next read.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return nil, errLineTooLong
	case errors.Is(err, io.EOF) && len(line) > 0:
		return nil, io.ErrUnexpectedEOF
	case err != nil:
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// command is one parsed client command line.
type command struct {
	verb   string // upper-cased keyword
	arg    string // everything after the first space, unmodified
	hasArg bool   // a space followed the keyword (arg may still be empty)
}

// maxVerb is the longest keyword we look at; POP3 keywords are three or four
// characters (RFC 1939 §3), so anything longer is an unknown command.
const maxVerb = 8

// parseCommand splits a command line into its keyword and argument. The
// keyword is case-insensitive (RFC 1939 §3); the argument is kept as sent,
// because a password may contain spaces (RFC 1939 §7, PASS).
func parseCommand(line []byte) command {
	verb, arg, hasArg := bytes.Cut(line, []byte{' '})
	if len(verb) > maxVerb {
		verb = verb[:0]
	}
	var up [maxVerb]byte
	for i, c := range verb {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		up[i] = c
	}
	return command{verb: string(up[:len(verb)]), arg: string(arg), hasArg: hasArg}
}

// Commands of the AUTHORIZATION state that we serve (RFC 1939 §4, RFC 2449,
// RFC 5034).
const (
	cmdAUTH = "AUTH"
	cmdCAPA = "CAPA"
	cmdPASS = "PASS"
	cmdQUIT = "QUIT"
	cmdSTLS = "STLS"
	cmdUSER = "USER"
)

// otherCommand returns the reply to a POP3 command we do not serve before
// login: commands of the TRANSACTION state (RFC 1939 §5) and extensions we
// do not offer (APOP, UTF8, LANG, and STLS without local TLS). ok is false
// for words that are no POP3 command at all.
func otherCommand(verb string) (reply string, ok bool) {
	switch verb {
	case "DELE", "LIST", "NOOP", "RETR", "RSET", "STAT", "TOP", "UIDL":
		return replyNotYet, true
	case "APOP", "LANG", "STLS", "UTF8":
		return replyNotSupported, true
	}
	return "", false
}
