package imapfront

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
)

// Bounds of what a client may send before it has logged in.
const (
	// maxLineLength bounds one line of a command, CRLF included (RFC 7162
	// §4 asks servers to accept at least 8192 octets). The client reader has
	// exactly this size and never grows.
	maxLineLength = 8 * 1024
	// maxLiteralSize bounds one literal before login: enough for any user
	// name or password.
	maxLiteralSize = 4 * 1024
	// maxLiterals bounds the literals in one command (LOGIN needs two).
	maxLiterals = 4
	// maxLiteralDigits bounds the digits of a literal's length, so parsing
	// it cannot overflow.
	maxLiteralDigits = 10
	// maxParenDepth bounds nesting of parenthesized lists (ID needs one).
	maxParenDepth = 2
)

// continueLiteral is the continuation request for a synchronizing literal.
const continueLiteral = "+ Ready for literal data\r\n"

// argKind says how an argument was written.
type argKind int

const (
	argAtom    argKind = iota // astring atom, NIL included
	argQuoted                 // "quoted string"
	argLiteral                // {n} or {n+} literal
	argOpen                   // (
	argClose                  // )
)

// arg is one argument of a command.
type arg struct {
	kind argKind
	s    string // the value; empty for parentheses
}

// isString reports whether a is an astring (atom, quoted or literal).
func (a arg) isString() bool { return a.kind == argAtom || a.kind == argQuoted || a.kind == argLiteral }

// command is one parsed client command.
type command struct {
	tag  string
	name string // upper case
	args []arg
}

// parseError is a malformed command. A fatal one leaves the stream in an
// unknown state (a line too long, a non-synchronizing literal we refuse):
// the session ends with BYE. Otherwise the command has been read to its end
// and the session answers BAD and goes on.
type parseError struct {
	tag   string // the command's tag when it was parsed; "" otherwise
	code  string // response code for the reply, e.g. "TOOBIG"; may be empty
	msg   string // text of the reply
	fatal bool
}

func (e *parseError) Error() string { return "imap: " + e.msg }

var errLineTooLong = &parseError{msg: "Line too long", fatal: true}

// cmdReader reads client commands from a fixed-size buffered reader.
type cmdReader struct {
	br *bufio.Reader // size maxLineLength; handed to the relay after login
	// cont writes the continuation request for a synchronizing literal.
	cont func() error
}

// readLine reads one line without its line ending. The slice is valid
// until the next read. A bare LF ends a line too.
func (r *cmdReader) readLine() ([]byte, error) {
	b, err := r.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return nil, errLineTooLong
	}
	if err != nil {
		if err == io.EOF && len(b) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	b = b[:len(b)-1]
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b, nil
}

// read reads one command: a line, and for each literal the literal's bytes
// and the line that goes on after it. A synchronizing literal is answered
// with a continuation request before its bytes are read.
func (r *cmdReader) read() (*command, error) {
	line, err := r.readLine()
	if err != nil {
		return nil, err
	}
	p := parser{line: line}
	cmd := &command{}
	if cmd.tag, err = p.tagWord(); err != nil {
		return nil, p.fail("", err.Error())
	}
	if !p.take(' ') {
		return nil, p.fail(cmd.tag, "Missing command")
	}
	name, err := p.atom(false)
	if err != nil {
		return nil, p.fail(cmd.tag, "Invalid command name")
	}
	// ASCII-only: command names are ASCII (RFC 3501 §9), and strings.ToUpper
	// would turn each invalid UTF-8 byte into a 3-byte U+FFFD, so a name
	// could outgrow the line it came from (found by FuzzPreAuth).
	cmd.name = upperASCII(name)
	literals, depth := 0, 0
	for {
		lit, err := p.args(cmd, &depth)
		if err != nil {
			return nil, p.fail(cmd.tag, err.Error())
		}
		if lit == nil {
			break
		}
		if literals++; literals > maxLiterals {
			return nil, lit.refuse(cmd.tag, "Too many literals")
		}
		s, err := r.literal(cmd.tag, lit)
		if err != nil {
			return nil, err
		}
		cmd.args = append(cmd.args, arg{kind: argLiteral, s: s})
		if line, err = r.readLine(); err != nil {
			return nil, err
		}
		p = parser{line: line}
	}
	if depth != 0 {
		return nil, &parseError{tag: cmd.tag, msg: "Unbalanced parentheses"}
	}
	return cmd, nil
}

// literal reads the bytes of the literal lit announced at the end of a line.
func (r *cmdReader) literal(tag string, lit *literalSpec) (string, error) {
	if lit.size > maxLiteralSize {
		return "", lit.refuse(tag, "Literal too big")
	}
	if lit.sync {
		if err := r.cont(); err != nil {
			return "", err
		}
	}
	b := make([]byte, lit.size)
	if _, err := io.ReadFull(r.br, b); err != nil {
		return "", err
	}
	if bytes.IndexByte(b, 0) >= 0 {
		// RFC 3501 §4.3: a literal is CHAR8, NUL excluded. The command has
		// been read up to here only: the rest of it would be read as a
		// new command, so end the session.
		return "", &parseError{tag: tag, msg: "NUL in literal", fatal: true}
	}
	return string(b), nil
}

// literalSpec is a literal announced at the end of a line: {size} or {size+}.
type literalSpec struct {
	size int64
	sync bool
}

// refuse is the error for a literal that will not be read: a synchronizing
// one is simply answered BAD (the client waits for our continuation); the
// bytes of a non-synchronizing one are on their way, so the session ends.
func (l *literalSpec) refuse(tag, msg string) error {
	return &parseError{tag: tag, code: "TOOBIG", msg: msg, fatal: !l.sync}
}

// parser splits one line into tokens (RFC 3501 §9 formal syntax, leniently:
// 8-bit bytes are allowed in atoms and quoted strings for UTF-8 passwords).
type parser struct {
	line []byte
	pos  int
}

func (p *parser) end() bool  { return p.pos >= len(p.line) }
func (p *parser) peek() byte { return p.line[p.pos] }

func (p *parser) take(c byte) bool {
	if !p.end() && p.peek() == c {
		p.pos++
		return true
	}
	return false
}

// fail returns the parse error for a syntax error in the current line. If
// the line ends with a non-synchronizing literal, its bytes are on the way
// and would be read as commands: that error is fatal.
func (p *parser) fail(tag, msg string) error {
	_, nonSync := trailingLiteral(p.line)
	return &parseError{tag: tag, msg: msg, fatal: nonSync}
}

// trailingLiteral reports whether line ends with a literal announcement and
// whether it is non-synchronizing.
func trailingLiteral(line []byte) (ok, nonSync bool) {
	if !bytes.HasSuffix(line, []byte("}")) {
		return false, false
	}
	i := bytes.LastIndexByte(line, '{')
	if i < 0 {
		return false, false
	}
	return true, bytes.HasSuffix(line, []byte("+}"))
}

// tagWord parses a tag: astring characters except "+" (RFC 3501 §9).
func (p *parser) tagWord() (string, error) {
	start := p.pos
	for !p.end() && isAtomChar(p.peek(), true) && p.peek() != '+' && p.peek() < 0x80 {
		p.pos++
	}
	if p.pos == start {
		return "", syntaxError("Invalid tag")
	}
	return string(p.line[start:p.pos]), nil
}

// args parses arguments up to the end of the line or a literal announcement,
// which it returns. Every argument follows a space, except right after "("
// and for ")".
func (p *parser) args(cmd *command, depth *int) (*literalSpec, error) {
	afterOpen := false
	for !p.end() {
		if p.peek() == ')' {
			if *depth == 0 {
				return nil, syntaxError("Unbalanced parentheses")
			}
			p.pos++
			*depth--
			cmd.args = append(cmd.args, arg{kind: argClose})
			afterOpen = false
			continue
		}
		if !afterOpen && !p.take(' ') {
			return nil, syntaxError("Expected a space")
		}
		if p.end() {
			return nil, syntaxError("Trailing space")
		}
		afterOpen = false
		switch p.peek() {
		case '(':
			if *depth++; *depth > maxParenDepth {
				return nil, syntaxError("Lists nested too deep")
			}
			p.pos++
			cmd.args = append(cmd.args, arg{kind: argOpen})
			afterOpen = true
		case '"':
			s, err := p.quoted()
			if err != nil {
				return nil, err
			}
			cmd.args = append(cmd.args, arg{kind: argQuoted, s: s})
		case '{':
			return p.literalSpec()
		default:
			s, err := p.atom(true)
			if err != nil {
				return nil, err
			}
			cmd.args = append(cmd.args, arg{kind: argAtom, s: s})
		}
	}
	return nil, nil
}

// atom parses an atom; withBracket allows "]" (astring, RFC 3501 §9).
func (p *parser) atom(withBracket bool) (string, error) {
	start := p.pos
	for !p.end() && isAtomChar(p.peek(), withBracket) {
		p.pos++
	}
	if p.pos == start {
		return "", syntaxError("Invalid character")
	}
	return string(p.line[start:p.pos]), nil
}

// quoted parses a quoted string with \" and \\ escapes (RFC 3501 §4.3).
func (p *parser) quoted() (string, error) {
	p.pos++ // opening quote
	var b strings.Builder
	for !p.end() {
		c := p.peek()
		p.pos++
		switch {
		case c == '"':
			return b.String(), nil
		case c == '\\':
			if p.end() || (p.peek() != '"' && p.peek() != '\\') {
				return "", syntaxError("Invalid escape in quoted string")
			}
			b.WriteByte(p.peek())
			p.pos++
		case c == '\r' || c == '\n' || c == 0:
			return "", syntaxError("Invalid character in quoted string")
		default:
			b.WriteByte(c)
		}
	}
	return "", syntaxError("Unterminated quoted string")
}

// literalSpec parses "{n}" or "{n+}" (RFC 7888 LITERAL+), which must end
// the line.
func (p *parser) literalSpec() (*literalSpec, error) {
	p.pos++ // {
	start := p.pos
	var n int64
	for !p.end() && p.peek() >= '0' && p.peek() <= '9' {
		if p.pos-start >= maxLiteralDigits {
			return nil, syntaxError("Literal length too long")
		}
		n = n*10 + int64(p.peek()-'0')
		p.pos++
	}
	if p.pos == start {
		return nil, syntaxError("Invalid literal")
	}
	sync := !p.take('+')
	if !p.take('}') || !p.end() {
		return nil, syntaxError("Invalid literal")
	}
	return &literalSpec{size: n, sync: sync}, nil
}

// isAtomChar reports whether c may appear in an atom: any CHAR except
// atom-specials (RFC 3501 §9), and 8-bit bytes. "]" is allowed in an
// astring only.
func isAtomChar(c byte, withBracket bool) bool {
	switch c {
	case '(', ')', '{', '%', '*', '"', '\\', 0x7f:
		return false
	case ']':
		return withBracket
	}
	return c > ' '
}

// syntaxError is the client-facing text of a syntax error in a command.
type syntaxError string

func (e syntaxError) Error() string { return string(e) }

// upperASCII upper-cases the ASCII letters of s and leaves every other byte
// as it is.
func upperASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'a' <= s[i] && s[i] <= 'z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'a' <= b[j] && b[j] <= 'z' {
					b[j] -= 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
