package smtpfront

import (
	"strings"

	"github.com/xoauthd/xoauthd/proxy"
)

// traceRedactor is the proxy.Redactor of one SMTP client connection's
// protocol trace. The initial response of AUTH is shown as "***"; from an
// AUTH to its final reply every further client line is a SASL response (or
// a command pipelined behind it) and shown as "***", and so are the
// payloads of "334" challenges. The trace ends (stop) when the reply to
// STARTTLS has been written, as the bytes that follow are TLS; the session
// ends it too after a successful AUTH, so that messages are never traced.
type traceRedactor struct {
	inAuth   bool   // an AUTH exchange is in progress
	startTLS bool   // STARTTLS was read and its reply not yet written
	stop     func() // ends the trace; set when the trace is set up
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
	case "AUTH":
		shown, starts := proxy.RedactAuth(line, words)
		r.inAuth = starts
		return shown
	case "STARTTLS":
		r.startTLS = true
	}
	return line
}

// Reply implements proxy.Redactor.
func (r *traceRedactor) Reply(line string) string {
	final := len(line) < 4 || line[3] != '-'
	switch {
	case r.inAuth && strings.HasPrefix(line, "334"):
		return proxy.RedactChallenge("334", line)
	case r.inAuth && final:
		r.inAuth = false
	case r.startTLS && final:
		r.startTLS = false
		if strings.HasPrefix(line, "220") && r.stop != nil {
			r.stop()
		}
	}
	return line
}
