package pop3front

import (
	"strings"

	"github.com/xoauthd/xoauthd/proxy"
)

// traceRedactor is the proxy.Redactor of one POP3 connection's protocol
// trace, on the client side as on the upstream side. The argument of PASS
// and an AUTH initial response are shown as "***". From an AUTH with a
// mechanism to its final +OK or -ERR every further command line is a SASL
// response (the client's base64 user name and password, xoauthd's XOAUTH2
// blob and the empty line after an error challenge, a cancelling "*", or
// commands pipelined behind it): all are shown as "***", and so are the
// payloads of "+ " continuations. The command is looked for in the first
// word after leading spaces, as the front reads it.
type traceRedactor struct {
	inAuth bool // an AUTH exchange is in progress
}

// Command implements proxy.Redactor.
func (r *traceRedactor) Command(line string) string {
	if r.inAuth {
		return proxy.Redacted
	}
	words := strings.Fields(line)
	if len(words) == 0 {
		return line
	}
	switch strings.ToUpper(words[0]) {
	case cmdPASS:
		if len(words) > 1 || strings.Contains(line, " ") {
			return words[0] + " " + proxy.Redacted
		}
	case cmdAUTH:
		shown, starts := proxy.RedactAuth(line, words)
		r.inAuth = starts
		return shown
	}
	return line
}

// Reply implements proxy.Redactor.
func (r *traceRedactor) Reply(line string) string {
	if !r.inAuth {
		return line
	}
	if line == "+" || strings.HasPrefix(line, "+ ") {
		return proxy.RedactChallenge("+", line)
	}
	if isOK(line) || isERR(line) {
		r.inAuth = false
	}
	return line
}
