package diagnose

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/xoauthd/xoauthd/proxy"
)

const (
	// maxReplyBytes bounds the reply text a parser reads; anything longer is
	// cut (Exchange's longest replies are a few hundred bytes).
	maxReplyBytes = 4096
	// maxSMTPLines bounds the lines of one multi-line SMTP reply.
	maxSMTPLines = 100
	// maxShown bounds the reply or error text repeated in an explanation.
	maxShown = 300
)

// Protocol names a mail protocol.
type Protocol string

// The protocols whose replies the package parses.
const (
	IMAP Protocol = "imap"
	POP3 Protocol = "pop3"
	SMTP Protocol = "smtp"
)

// EnhancedCode is an SMTP enhanced status code (RFC 3463): class, subject,
// detail, as in 5.7.139. The zero value means there was none. It has the
// shape of go-smtp's smtp.EnhancedCode, so the two convert.
type EnhancedCode [3]int

// IsZero reports whether the reply had no enhanced code.
func (c EnhancedCode) IsZero() bool { return c == EnhancedCode{} }

// String formats the code as "5.7.139", or "" for the zero value.
func (c EnhancedCode) String() string {
	if c.IsZero() {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", c[0], c[1], c[2])
}

// Reply is a mail server's answer to a command, parsed into its parts. As an
// error it stands for a failed command (a status other than OK).
type Reply struct {
	Protocol Protocol
	// Code is the SMTP reply code, e.g. 535; 0 for IMAP and POP3.
	Code int
	// Enhanced is the SMTP enhanced status code; zero when absent.
	Enhanced EnhancedCode
	// Status is the IMAP status (OK, NO, BAD, BYE, PREAUTH) or the POP3
	// status (+OK, -ERR), upper-case; "" for SMTP.
	Status string
	// RespCode is the IMAP or POP3 response code in brackets, upper-case and
	// without arguments: AUTHENTICATIONFAILED, UNAVAILABLE, AUTH, SYS/TEMP.
	RespCode string
	// Text is the human-readable text after the codes; the lines of a
	// multi-line SMTP reply are joined with spaces.
	Text string
	// Line is the reply as received (lines joined with " / "), without
	// control characters and cut to a few hundred bytes: safe to print.
	Line string
}

// Error returns the reply as received.
func (r *Reply) Error() string {
	return fmt.Sprintf("%s server replied %q", r.Protocol, r.Line)
}

// codeString is how the reply is named in an explanation: "535 5.7.139",
// "NO [AUTHENTICATIONFAILED]", "-ERR".
func (r *Reply) codeString() string {
	switch r.Protocol {
	case SMTP:
		s := strconv.Itoa(r.Code)
		if !r.Enhanced.IsZero() {
			s += " " + r.Enhanced.String()
		}
		return s
	default:
		s := r.Status
		if r.RespCode != "" {
			s += " [" + r.RespCode + "]"
		}
		return s
	}
}

// errNotReply is returned by the parsers for text that is not a reply.
var errNotReply = errors.New("not a status reply")

// ParseSMTP parses an SMTP reply (RFC 5321 §4.2): one line "535 5.7.139
// text" or several "250-..." lines ending with "250 ...", separated by CRLF
// or LF. The enhanced code (RFC 2034) is taken from the first line when
// present and removed from the text of every line.
func ParseSMTP(reply string) (*Reply, error) {
	reply = cut(reply, maxReplyBytes)
	lines := strings.Split(strings.TrimRight(reply, "\r\n"), "\n")
	if len(lines) > maxSMTPLines {
		lines = lines[:maxSMTPLines]
	}
	r := &Reply{Protocol: SMTP}
	var texts, raw []string
	for i, l := range lines {
		l = strings.TrimSuffix(l, "\r")
		if len(l) < 3 || (len(l) > 3 && l[3] != ' ' && l[3] != '-') {
			return nil, fmt.Errorf("smtp reply line %q: %w", clean(l, 40), errNotReply)
		}
		code, err := strconv.Atoi(l[:3])
		if err != nil || code < 200 || code > 599 || (i > 0 && code != r.Code) {
			return nil, fmt.Errorf("smtp reply line %q: %w", clean(l, 40), errNotReply)
		}
		r.Code = code
		text := ""
		if len(l) > 4 {
			text = l[4:]
		}
		if i == 0 {
			r.Enhanced, text = splitEnhanced(text, code)
		} else if ec, rest := splitEnhanced(text, code); ec == r.Enhanced {
			text = rest
		}
		texts = append(texts, strings.TrimSpace(text))
		raw = append(raw, l)
	}
	r.Text = clean(strings.Join(texts, " "), maxReplyBytes)
	r.Line = clean(strings.Join(raw, " / "), maxShown)
	return r, nil
}

// FromSMTPError makes a Reply from the parts of an SMTP error as go-smtp's
// client returns it (code, enhanced code, message without the code).
func FromSMTPError(code int, enhanced [3]int, message string) *Reply {
	ec := EnhancedCode(enhanced)
	if ec[0] < 0 { // go-smtp's NoEnhancedCode
		ec = EnhancedCode{}
	}
	text := strings.Join(strings.Fields(strings.ReplaceAll(message, "\n", " ")), " ")
	r := &Reply{Protocol: SMTP, Code: code, Enhanced: ec, Text: clean(text, maxReplyBytes)}
	line := strconv.Itoa(code)
	if !ec.IsZero() {
		line += " " + ec.String()
	}
	r.Line = clean(line+" "+text, maxShown)
	return r
}

// splitEnhanced takes an RFC 3463 enhanced code off the front of text when
// its class matches the reply code's first digit.
func splitEnhanced(text string, code int) (EnhancedCode, string) {
	word, rest, _ := strings.Cut(text, " ")
	parts := strings.Split(word, ".")
	if len(parts) != 3 {
		return EnhancedCode{}, text
	}
	var ec EnhancedCode
	for i, p := range parts {
		// RFC 3463 §2: class is one digit, subject and detail 1-3 digits.
		if p == "" || len(p) > 3 || (i == 0 && len(p) != 1) || strings.Trim(p, "0123456789") != "" {
			return EnhancedCode{}, text
		}
		ec[i], _ = strconv.Atoi(p)
	}
	if ec[0] != code/100 {
		return EnhancedCode{}, text
	}
	return ec, rest
}

// imapStatuses are the IMAP status responses (RFC 9051 §7.1).
var imapStatuses = []string{"OK", "NO", "BAD", "BYE", "PREAUTH"}

// ParseIMAP parses an IMAP status response (RFC 9051 §7.1), tagged ("A1 NO
// AUTHENTICATE failed.") or untagged ("* BYE Session invalidated -
// AccessTokenExpired"), with an optional response code in brackets.
func ParseIMAP(line string) (*Reply, error) {
	line = strings.TrimRight(cut(line, maxReplyBytes), "\r\n")
	tag, rest, ok := strings.Cut(line, " ")
	if !ok || tag == "" || !isIMAPTag(tag) {
		return nil, fmt.Errorf("imap line %q: %w", clean(line, 40), errNotReply)
	}
	word, rest, _ := strings.Cut(rest, " ")
	status := strings.ToUpper(word)
	if !slices.Contains(imapStatuses, status) {
		return nil, fmt.Errorf("imap line %q: %w", clean(line, 40), errNotReply)
	}
	code, text := splitRespCode(rest)
	return &Reply{Protocol: IMAP, Status: status, RespCode: code, Text: clean(text, maxReplyBytes), Line: clean(line, maxShown)}, nil
}

// isIMAPTag reports whether s is "*" or a tag (RFC 9051 §9: astring
// characters except "+").
func isIMAPTag(s string) bool {
	if s == "*" {
		return true
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\+`, c) >= 0 {
			return false
		}
	}
	return true
}

// ParsePOP3 parses a POP3 status line (RFC 1939 §3): "+OK ..." or
// "-ERR ...", with an optional RFC 2449 response code in brackets.
func ParsePOP3(line string) (*Reply, error) {
	line = strings.TrimRight(cut(line, maxReplyBytes), "\r\n")
	word, rest, _ := strings.Cut(line, " ")
	status := strings.ToUpper(word)
	if status != "+OK" && status != "-ERR" {
		return nil, fmt.Errorf("pop3 line %q: %w", clean(line, 40), errNotReply)
	}
	code, text := splitRespCode(rest)
	return &Reply{Protocol: POP3, Status: status, RespCode: code, Text: clean(text, maxReplyBytes), Line: clean(line, maxShown)}, nil
}

// splitRespCode takes "[CODE args] text" apart; the code is upper-cased and
// loses its arguments. Without a well-formed bracket the whole is text.
func splitRespCode(s string) (code, text string) {
	s = strings.TrimLeft(s, " ")
	if !strings.HasPrefix(s, "[") {
		return "", s
	}
	end := strings.IndexByte(s, ']')
	if end < 0 {
		return "", s
	}
	code, _, _ = strings.Cut(s[1:end], " ")
	for i := 0; i < len(code); i++ {
		if c := code[i]; c <= ' ' || c >= 0x7f {
			return "", s
		}
	}
	return strings.ToUpper(code), strings.TrimLeft(s[end+1:], " ")
}

// cut bounds s to n bytes.
func cut(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// clean makes server text safe to print: credentials an upstream may echo
// become "***" (proxy.RedactUpstreamText), invalid UTF-8 and control
// characters become spaces, runs of spaces one, and the result is cut after
// n bytes (on a rune boundary, marked with "...").
func clean(s string, n int) string {
	s = proxy.RedactUpstreamText(s)
	var b strings.Builder
	space := false
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) || !unicode.IsPrint(r) {
			r = ' '
		}
		if r == ' ' {
			if space {
				continue
			}
			space = true
		} else {
			space = false
		}
		if b.Len()+utf8.RuneLen(r) > n {
			return strings.TrimSpace(b.String()) + "..."
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}
