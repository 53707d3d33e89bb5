package pop3front

import (
	"bytes"
	"sync"

	"github.com/xoauthd/xoauthd/proxy"
)

// Following a relayed session for its goodbye at shutdown.
const (
	// maxTrackedHead is how much of the start of each line is kept: enough
	// for a command's name and whether an argument follows, or for "+OK"
	// and the "." that ends a multi-line response.
	maxTrackedHead = 16
	// maxTrackedCommands bounds the commands awaiting a response that are
	// remembered; beyond it the session is no longer followed.
	maxTrackedCommands = 1024
)

// farewell is the proxy.Farewell of a relayed POP3 session. POP3 has no
// unsolicited responses (RFC 1939): the goodbye "-ERR" is safe where no
// response has begun and none is unfinished, and it is then read as the
// answer to the client's next (or pending) command, which fails, as it
// would on a broken connection. Knowing where a response ends takes the
// commands: after "+OK", RETR, TOP, CAPA and LIST or UIDL without an
// argument are answered with lines up to a "." line (RFC 1939, RFC 2449);
// everything else with one line.
type farewell struct {
	mu      sync.Mutex
	pending []bool // per command awaiting its response: multi-line if +OK
	lost    bool   // the responses can no longer be followed

	// Client side (the relay's goroutine that copies the client's bytes).
	cmd     []byte // start of the client's current line
	cmdOver bool   // the current line's start is longer than maxTrackedHead

	// Upstream side (the goroutine that writes to the client), under mu.
	line    []byte // start of the current response line
	lineLen int    // bytes of the current line so far
	inBody  bool   // inside a multi-line response, after its +OK line
}

var _ proxy.Farewell = (*farewell)(nil)

// lf ends a line (the CR before it is part of the line as kept).
var lf = []byte("\n")

// ClientBytes notes each command line and how it will be answered.
func (f *farewell) ClientBytes(p []byte) {
	for len(p) > 0 {
		part, rest, ended := bytes.Cut(p, lf)
		f.cmd = keepHead(f.cmd, part)
		if len(part) > 0 && len(f.cmd) == maxTrackedHead {
			f.cmdOver = true
		}
		if !ended {
			return
		}
		p = rest
		multi := multiLine(f.cmd, f.cmdOver)
		f.cmd, f.cmdOver = f.cmd[:0], false
		f.mu.Lock()
		if len(f.pending) >= maxTrackedCommands {
			f.lost = true
		} else {
			f.pending = append(f.pending, multi)
		}
		f.mu.Unlock()
	}
}

// multiLine reports whether the command line starting with head (cut
// after maxTrackedHead bytes: over) is answered by a multi-line response
// after +OK.
func multiLine(head []byte, over bool) bool {
	fields := bytes.Fields(head)
	if len(fields) == 0 {
		return false
	}
	verb := string(bytes.ToUpper(fields[0]))
	switch verb {
	case "RETR", "TOP", "CAPA":
		return true
	case "LIST", "UIDL":
		return len(fields) == 1 && !(over && len(head) > len(fields[0]))
	}
	return false
}

// UpstreamBytes follows the responses the client got.
func (f *farewell) UpstreamBytes(p []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(p) > 0 && !f.lost {
		part, rest, ended := bytes.Cut(p, lf)
		f.line = keepHead(f.line, part)
		f.lineLen += len(part)
		if !ended {
			return
		}
		p = rest
		f.endLine()
		f.line, f.lineLen = f.line[:0], 0
	}
}

// keepHead appends to head what of part fits within maxTrackedHead.
func keepHead(head, part []byte) []byte {
	n := max(maxTrackedHead-len(head), 0)
	return append(head, part[:min(len(part), n)]...)
}

// endLine accounts for one whole response line (f.line, f.lineLen, without
// its LF). The caller holds mu.
func (f *farewell) endLine() {
	if f.inBody {
		if f.lineLen <= 2 && bytes.Equal(bytes.TrimSuffix(f.line, []byte("\r")), []byte(".")) {
			f.inBody = false
			f.pending = f.pending[1:]
		}
		return
	}
	if len(f.pending) == 0 {
		f.lost = true // a response to no command: not POP3 as known here
		return
	}
	if f.pending[0] && bytes.HasPrefix(f.line, []byte("+OK")) {
		f.inBody = true
		return
	}
	f.pending = f.pending[1:]
}

// Goodbye returns the -ERR when no response is under way.
func (f *farewell) Goodbye() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lost || f.inBody || f.lineLen > 0 {
		return nil
	}
	return []byte(replyShutdown)
}
