package proxy

import (
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
)

// maxTraceLine bounds one line of a protocol trace: the rest of a longer
// line is not logged (the line is marked truncated), so the trace of a
// client sending endless input stays small.
const maxTraceLine = 512

// Peers of a traced connection, logged as peer.
const (
	TracePeerClient   = "client"   // the local client; xoauthd answers it
	TracePeerUpstream = "upstream" // the mail server; xoauthd sends it commands
)

// Redactor decides what a protocol trace shows of each line of one
// connection. A front gives each traced connection a fresh one: it may keep
// state, such as "an authentication exchange is in progress, so the
// client's next lines are credentials". It must replace every credential
// (password, SASL response, bearer token, XOAUTH2 blob) with "***"; when
// unsure it should hide the line. Calls for one connection are serialised.
type Redactor interface {
	// Command returns a line sent by the side that issues commands (the
	// local client, or xoauthd towards the upstream), without its line
	// ending, as it may be logged.
	Command(line string) string
	// Reply returns a line sent by the side that answers (xoauthd towards
	// the client, or the upstream) as it may be logged.
	Reply(line string) string
}

// Redacted is what a protocol trace shows in place of a credential.
const Redacted = "***"

// RedactAuth returns what a protocol trace shows of a command line whose
// words (strings.Fields of line) start with AUTH, the SASL command of SMTP
// (RFC 4954) and POP3 (RFC 5034), and whether the line starts a SASL
// exchange. AUTH alone (POP3's listing of mechanisms) is shown as it is and
// starts none; the command and the mechanism are shown, an initial response
// after them as Redacted.
func RedactAuth(line string, words []string) (shown string, starts bool) {
	switch {
	case len(words) < 2:
		return line, false
	case len(words) > 2:
		return words[0] + " " + words[1] + " " + Redacted, true
	}
	return words[0] + " " + words[1], true
}

// RedactChallenge returns what a protocol trace shows of a SASL challenge,
// line: code ("+" in IMAP and POP3, "334" in SMTP) and a payload. An empty
// challenge is shown as it is; a payload (it may hold a server's error
// details or a prompt the client answers with a secret) as Redacted.
func RedactChallenge(code, line string) string {
	if strings.TrimSpace(strings.TrimPrefix(line, code)) == "" {
		return line
	}
	return code + " " + Redacted
}

// Traced returns conn wrapped so that every line read from or written to it
// is logged at DEBUG on c.Log with the message "trace", through r, when the
// Server traces (Server.Trace and a logger at DEBUG); otherwise it returns
// conn itself. peer says what conn is connected to: TracePeerClient (c
// itself, or a TLS layer over it) or TracePeerUpstream (a connection the
// front dialled for c's login). A front uses the wrapper only before and
// during login: after login it hands the unwrapped connections to Relay, so
// a relayed session is not traced byte by byte (it gets Relay's "closed"
// line with the byte counts). The wrapper must not be passed to a TLS
// handshake: wrap the TLS connection instead, so the trace shows plain text.
func (c *Conn) Traced(conn net.Conn, peer string, r Redactor) net.Conn {
	if !c.trace || c.Log == nil || r == nil {
		return conn
	}
	return &traceConn{Conn: conn, log: c.Log, peer: peer, r: r}
}

// traceConn logs the lines that pass through a connection.
type traceConn struct {
	net.Conn
	log  *slog.Logger
	peer string

	stopped atomic.Bool // set by StopTrace

	mu      sync.Mutex // serialises r and the line buffers
	r       Redactor
	in, out traceLine // partial lines read and written
}

// StopTrace ends the protocol trace of conn when Traced wrapped it: later
// bytes pass through unlogged (a partial line is dropped). A front that
// keeps using the wrapper after login, as SMTP does (its session runs
// through go-smtp to the end), calls it once the login succeeded, so that
// messages are never traced. Other connections are left alone.
func StopTrace(conn net.Conn) {
	if t, ok := conn.(*traceConn); ok {
		t.stopped.Store(true)
	}
}

// traceLine collects one line of a trace.
type traceLine struct {
	b         []byte // the line so far, at most maxTraceLine bytes
	truncated bool   // bytes after maxTraceLine were dropped
}

func (t *traceConn) Read(p []byte) (int, error) {
	n, err := t.Conn.Read(p)
	if n > 0 && !t.stopped.Load() {
		t.feed(&t.in, "in", p[:n])
	}
	return n, err
}

func (t *traceConn) Write(p []byte) (int, error) {
	n, err := t.Conn.Write(p)
	if n > 0 && !t.stopped.Load() {
		t.feed(&t.out, "out", p[:n])
	}
	return n, err
}

// feed adds bytes moving in dir ("in": read by xoauthd, "out": written by
// it) and logs each line they complete.
func (t *traceConn) feed(l *traceLine, dir string, p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if room := maxTraceLine - len(l.b); len(chunk) > room {
			chunk, l.truncated = chunk[:room], true
		}
		l.b = append(l.b, chunk...)
		if i < 0 {
			return
		}
		t.emit(dir, l)
		p = p[i+1:]
	}
}

// emit logs the complete line in l through the redactor and resets l.
func (t *traceConn) emit(dir string, l *traceLine) {
	line := string(bytes.TrimSuffix(l.b, []byte("\r")))
	// On a client connection xoauthd reads the commands; on an upstream
	// connection it writes them.
	if (t.peer == TracePeerClient) == (dir == "in") {
		line = t.r.Command(line)
	} else {
		line = t.r.Reply(line)
	}
	// The front's redactor knows the dialogue; this catches what it cannot
	// know, such as an upstream that echoes a command in its reply.
	line = RedactUpstreamText(line)
	attrs := []slog.Attr{slog.String("peer", t.peer), slog.String("dir", dir), slog.String("line", line)}
	if l.truncated {
		attrs = append(attrs, slog.Bool("truncated", true))
	}
	t.log.LogAttrs(context.Background(), slog.LevelDebug, "trace", attrs...)
	l.b, l.truncated = l.b[:0], false
}

// Shapes RedactUpstreamText looks for.
const (
	// minSecretRun is the shortest run of base64 characters that is decoded
	// to see whether it is a SASL response; shorter runs are words.
	minSecretRun = 16
	// jwtPrefix starts every JWT (and any base64 of JSON): base64 of `{"`.
	jwtPrefix = "eyJ"
	// bearerWord precedes a bearer token in "auth=Bearer TOKEN" and in an
	// HTTP-style "Authorization: Bearer TOKEN".
	bearerWord = "bearer"
)

// RedactUpstreamText returns text that came from an upstream (a reply line,
// or a reply quoted in an error) with every credential it may echo replaced
// by "***", before it is logged or printed: a base64 SASL response (XOAUTH2
// or OAUTHBEARER: it decodes to "user=..." or holds "auth=Bearer"), a JWT
// or other base64 JSON, and the word after "Bearer". Everything else,
// queue ids and diagnostic codes included, is left as it is. An upstream
// that echoes xoauthd's AUTHENTICATE command in its reply would otherwise
// put the access token into the log. The protocol trace applies it to every
// line, and every place that logs upstream text calls it.
func RedactUpstreamText(text string) string {
	var b strings.Builder
	rest := text
	changed := false
	for {
		i := strings.IndexFunc(rest, isTokenChar)
		if i < 0 {
			break
		}
		j := strings.IndexFunc(rest[i:], func(r rune) bool { return !isTokenChar(r) })
		if j < 0 {
			j = len(rest) - i
		}
		// A run ends before trailing dots: the end of a sentence, or the
		// "..." of a cut quote.
		for j > 1 && rest[i+j-1] == '.' {
			j--
		}
		run := rest[i : i+j]
		before := text[:len(text)-len(rest)+i]
		if isSecretRun(run, before) {
			b.WriteString(rest[:i])
			b.WriteString(redactedText)
			changed = true
		} else {
			b.WriteString(rest[:i+j])
		}
		rest = rest[i+j:]
	}
	if !changed {
		return text
	}
	b.WriteString(rest)
	return b.String()
}

// redactedText replaces a credential in logged text.
const redactedText = "***"

// isTokenChar reports whether r may be part of a base64 or base64url run,
// or of a token made of them (JWTs, Google's ya29. tokens, with dots).
func isTokenChar(r rune) bool {
	return r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' ||
		r == '+' || r == '/' || r == '=' || r == '-' || r == '_' || r == '.'
}

// isSecretRun reports whether run, found after before, is a credential.
func isSecretRun(run, before string) bool {
	prev := strings.TrimRight(before, " =:")
	if len(prev) >= len(bearerWord) && len(prev) < len(before) &&
		strings.EqualFold(prev[len(prev)-len(bearerWord):], bearerWord) {
		return true
	}
	if len(run) < minSecretRun {
		return false
	}
	if strings.HasPrefix(run, jwtPrefix) {
		return true
	}
	return isSASLResponse(run)
}

// isSASLResponse reports whether run is base64 of an XOAUTH2 or OAUTHBEARER
// initial response (RFC 7628 §3.1), or a piece of one cut off at its end.
func isSASLResponse(run string) bool {
	s := strings.TrimRight(run, "=")
	s = s[:len(s)-len(s)%4]
	raw, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil {
		return false
	}
	low := strings.ToLower(string(raw))
	return strings.HasPrefix(low, "user=") || strings.HasPrefix(low, "n,") && strings.Contains(low, "\x01") ||
		strings.Contains(low, "auth=bearer")
}
