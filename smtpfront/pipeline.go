package smtpfront

import (
	"bytes"
	"errors"
	"net"
	"time"
)

// Command pipelining towards the upstream (RFC 2920).
//
// A client that pipelines sends MAIL, its RCPTs and DATA in one write and
// waits for all the replies together. go-smtp's server hands the session
// one command at a time and needs each reply before it reads the next, so
// relayed one by one the envelope would cost the upstream round trip of
// every command. Instead, when the upstream offers PIPELINING:
//
//  1. clientConn hands go-smtp at most one line per read, so what the client
//     pipelined behind a command stays in clientConn's pend, and it tracks
//     whether go-smtp's reader holds anything beyond the line it read last.
//  2. When go-smtp passes the session a MAIL and its reader holds nothing
//     more, the session reads the RCPT commands right behind it in pend,
//     only those of a plain form that go-smtp certainly parses to the same
//     address, and a DATA right behind them (pipelinedEnvelope).
//     upstreamConn writes them together with go-smtp's client's MAIL
//     command, in one write, and keeps them as ahead.
//  3. go-smtp's server then reads those commands and passes them to the
//     session, which relays each through go-smtp's client as usual:
//     upstreamConn drops the client's write of a command that already went
//     upstream, and the client reads its reply, which is already on its way.
//     The client gets the upstream's replies as before.
//  4. Should go-smtp's server not pass on a recipient that went upstream (it
//     refused it itself: more than its limit), the session notices at the
//     next RCPT, DATA, RSET or QUIT. It reads the outstanding replies (realign),
//     and if the upstream accepted a recipient the client was told was
//     refused, it resets the upstream transaction, or drops the upstream
//     session when a pipelined DATA already has the upstream waiting for a
//     message, and relays MAIL and the recipients the client was told were
//     accepted again. The upstream never holds a recipient the client does
//     not know about when a message starts, and nothing reaches an upstream
//     that waits for a message but the message go-smtp accepted.

// lineState tracks what go-smtp's reader holds: the lines clientConn hands
// on and whether the last hand-over ended exactly at the end of a line.
type lineState struct {
	head    [len(mailPrefix)]byte // the first bytes of the line last handed on
	headLen int
	ended   bool // the last byte handed on was '\n'
	alone   bool // the last hand-over held exactly one '\n', at its end
}

const (
	mailPrefix = "MAIL FROM:"
	rcptPrefix = "RCPT TO:<"
	rcptSuffix = ">\r\n"
	// maxPathLen bounds a pipelined recipient (RFC 5321 §4.5.3.1.3).
	maxPathLen = 256
)

// lineLen is the length of the first line of p, '\n' included, or len(p)
// when p holds no complete line.
func lineLen(p []byte) int {
	if i := bytes.IndexByte(p, '\n'); i >= 0 {
		return i + 1
	}
	return len(p)
}

// keepAfterLine keeps what follows the first line of the n bytes just read
// into b in pend, for later reads, so that go-smtp gets one line at a time.
// pend is empty when it is called. What is kept is at most one read of
// go-smtp's (4 KiB), in pend's own small array: a client that pipelines
// behind a slow command (a failing AUTH is slowed down on purpose) holds
// no large buffer.
func (c *clientConn) keepAfterLine(b []byte, n int, err error) (int, error) {
	i := bytes.IndexByte(b[:n], '\n')
	if i < 0 || i+1 == n {
		return n, err
	}
	if c.pendBuf != nil {
		c.pend = append((*c.pendBuf)[:0], b[i+1:n]...)
	} else {
		c.pend = append(c.pend[:0], b[i+1:n]...)
	}
	c.pendErr = err
	return i + 1, nil
}

// noteLine records p, just handed to go-smtp, in c.line.
func (c *clientConn) noteLine(p []byte) {
	if len(p) == 0 {
		return
	}
	l := &c.line
	start := 0
	if i := bytes.LastIndexByte(p[:len(p)-1], '\n'); i >= 0 {
		start = i + 1
		l.headLen = 0
	} else if l.ended {
		l.headLen = 0
	}
	l.headLen += copy(l.head[l.headLen:], p[start:])
	l.ended = p[len(p)-1] == '\n'
	l.alone = bytes.IndexByte(p, '\n') == len(p)-1
}

// startsTLS reports whether b is go-smtp's 220 to a STARTTLS command it
// read last: the TLS handshake begins next.
func (c *clientConn) startsTLS(b []byte) bool {
	l := &c.line
	return l.ended && l.headLen >= len("STARTTLS") && hasPrefixFoldASCII(l.head[:l.headLen], "STARTTLS") &&
		bytes.HasPrefix(b, []byte("220"))
}

// pipelinedEnvelope returns what the client pipelined right behind the
// MAIL command go-smtp's server is handling, as go-smtp will read it: the
// recipients of the RCPT commands, in order, at most max and up to the
// first line that is incomplete or not of the form parseRcptLine accepts,
// and whether "DATA" follows them. It returns nothing unless go-smtp's
// reader holds nothing beyond that MAIL line, and nothing after go-smtp's
// own STARTTLS.
func (c *clientConn) pipelinedEnvelope(max int) (rcpts []string, data bool) {
	l := &c.line
	if c.handshaking || c.upgraded.Load() || c.tap != tapOff || !l.alone || !l.ended ||
		l.headLen != len(mailPrefix) || !hasPrefixFoldASCII(l.head[:], mailPrefix) {
		return nil, false
	}
	p := c.pend
	for len(rcpts) < max {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			break
		}
		addr, ok := parseRcptLine(p[:i+1])
		if !ok {
			break
		}
		rcpts = append(rcpts, addr)
		p = p[i+1:]
	}
	data = len(rcpts) > 0 && len(p) >= len(dataLine) && hasPrefixFoldASCII(p, dataLine)
	return rcpts, data
}

// parseRcptLine returns the address of line when it is a RCPT command of
// the plain form "RCPT TO:<local@domain>\r\n" (verb and "TO:" in any ASCII
// case, no parameters), with a local part of RFC 5322 atext and dots and a
// domain of letters, digits, hyphens and dots. go-smtp's server parses such
// a line to exactly that address; anything else is left to be relayed in
// turn.
func parseRcptLine(line []byte) (string, bool) {
	if len(line) < len(rcptPrefix)+len("a@b")+len(rcptSuffix) ||
		len(line) > len(rcptPrefix)+maxPathLen+len(rcptSuffix) ||
		!hasPrefixFoldASCII(line, rcptPrefix) || !bytes.HasSuffix(line, []byte(rcptSuffix)) {
		return "", false
	}
	addr := line[len(rcptPrefix) : len(line)-len(rcptSuffix)]
	at := bytes.IndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "", false
	}
	for _, b := range addr[:at] {
		if !isAtext(b) && b != '.' {
			return "", false
		}
	}
	for _, b := range addr[at+1:] {
		if !isLetDig(b) && b != '-' && b != '.' {
			return "", false
		}
	}
	return string(addr), true
}

func isLetDig(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9'
}

// isAtext reports whether b is RFC 5322 atext.
func isAtext(b byte) bool {
	return isLetDig(b) || b != 0 && bytes.IndexByte([]byte("!#$%&'*+-/=?^_`{|}~"), b) >= 0
}

// hasPrefixFoldASCII reports whether p begins with prefix, ASCII letters
// compared without case.
func hasPrefixFoldASCII(p []byte, prefix string) bool {
	if len(p) < len(prefix) {
		return false
	}
	for i := range len(prefix) {
		a, b := p[i], prefix[i]
		if 'a' <= a && a <= 'z' {
			a -= 'a' - 'A'
		}
		if 'a' <= b && b <= 'z' {
			b -= 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

// dataLine is the DATA command, as go-smtp's client writes it.
const dataLine = "DATA\r\n"

// rcptLine is the command go-smtp's client writes for Rcpt(to, nil).
func rcptLine(to string) string { return rcptPrefix + to + rcptSuffix }

// pipelinedCommands returns the commands to send upstream behind a MAIL
// for a pipelined envelope (see pipelinedEnvelope).
func pipelinedCommands(rcpts []string, data bool) []string {
	cmds := make([]string, 0, len(rcpts)+1)
	for _, r := range rcpts {
		cmds = append(cmds, rcptLine(r))
	}
	if data {
		cmds = append(cmds, dataLine)
	}
	return cmds
}

// writeMail writes go-smtp's client's MAIL command b with the commands
// behind it, in one write; those are then ahead.
func (c *upstreamConn) writeMail(b []byte) (int, error) {
	n := len(b)
	for _, cmd := range c.behind {
		n += len(cmd)
	}
	out := make([]byte, 0, n)
	out = append(out, b...)
	for _, cmd := range c.behind {
		out = append(out, cmd...)
	}
	c.ahead, c.behind = c.behind, nil
	if _, err := c.write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}

// dropAhead is Write while commands are ahead: go-smtp's client's write of
// the oldest one is dropped, since it went upstream already. Anything else
// is out of step (the session reads what is ahead first) and fails, so
// nothing can reach an upstream that may be waiting for a message.
func (c *upstreamConn) dropAhead(b []byte) (int, error) {
	if string(b) != c.ahead[0] {
		return 0, errOutOfStep
	}
	c.ahead = c.ahead[1:]
	return len(b), nil
}

// nextAhead returns the oldest command ahead ("" if none).
func (c *upstreamConn) nextAhead() string {
	if len(c.ahead) == 0 {
		return ""
	}
	return c.ahead[0]
}

// errOutOfStep is a write of go-smtp's client while replies to commands
// sent ahead of it are outstanding, other than the next of those commands.
var errOutOfStep = &net.OpError{Op: "write", Net: "smtp", Err: errOutOfStepCause{}}

type errOutOfStepCause struct{}

func (errOutOfStepCause) Error() string {
	return "smtpfront: command out of step with the commands pipelined upstream"
}

// errDataAhead: a DATA that went upstream ahead was answered 354 although
// go-smtp's server did not start a message. Only dropping the connection
// ends that without submitting one, so the upstream session was discarded.
var errDataAhead = errors.New("smtpfront: the upstream accepted a pipelined DATA that the client did not reach; upstream session dropped")

// drainAhead reads the upstream's replies to the commands that went
// upstream ahead and that go-smtp's server did not pass to the session,
// and reports whether the upstream accepted any of the RCPTs. err is set
// when the upstream session is gone (errDataAhead: discarded here because
// it waits for a message). The caller holds mu.
func (s *session) drainAhead() (accepted bool, err error) {
	for s.up != nil && len(s.up.conn.ahead) > 0 {
		// Each write is dropped; go-smtp's client reads the reply.
		cmd := s.up.conn.ahead[0]
		if cmd == dataLine {
			_, err := s.up.c.Data()
			if err == nil {
				s.discard("dropping the upstream session", errDataAhead)
				return accepted, errDataAhead
			}
			if isConnectionGone(err) {
				return accepted, err
			}
			continue
		}
		err := s.up.c.Rcpt(cmd[len(rcptPrefix):len(cmd)-len(rcptSuffix)], nil)
		switch {
		case err == nil:
			accepted = true
		case isConnectionGone(err):
			return accepted, err
		}
	}
	return accepted, nil
}

// realign makes the upstream transaction match what the client was told
// before cmd goes upstream: the replies to commands sent ahead are read,
// and when the upstream accepted a recipient the client was not told
// about, the upstream transaction is reset (or, when the upstream already
// waits for the message, a new upstream session opened) and MAIL and the
// client's accepted recipients are relayed again. When that fails, or the
// upstream is gone, the transaction is lost (the client gets 4xx and the
// next MAIL starts afresh). The caller holds mu.
func (s *session) realign(cmd string) error {
	accepted, err := s.drainAhead()
	switch {
	case errors.Is(err, errDataAhead):
		if _, _, err = s.ensureUpstream(); err != nil {
			s.setTx(false)
			return err
		}
	case err != nil:
		return s.upstreamFailed(cmd, err)
	case !accepted:
		return nil
	default:
		err = s.up.c.Reset()
	}
	s.log.Warn("the upstream accepted a pipelined recipient that the client was refused; restarting the upstream transaction",
		"cmd", cmd, "recipients", len(s.rcpts))
	up := s.up
	if err == nil {
		err = up.c.Mail(s.from, s.mailOpts)
	}
	for _, to := range s.rcpts {
		if err == nil {
			err = up.c.Rcpt(to, nil)
		}
	}
	if err != nil {
		s.discard("restarting the upstream transaction failed", err)
		return replyUpstreamLost
	}
	s.setTx(true) // also on a new upstream session
	return nil
}

// settleAhead reads what is ahead before the upstream session quits,
// bounded by quitTimeout. The caller holds mu.
func (s *session) settleAhead() {
	if s.up == nil || len(s.up.conn.ahead) == 0 {
		return
	}
	s.up.c.CommandTimeout = quitTimeout
	if _, err := s.drainAhead(); err != nil {
		s.discard("upstream session lost while reading pipelined replies", err)
	}
}

// write writes b to the connection with a deadline; the TLS records of a
// large b go out in one write (recordBatcher).
func (c *upstreamConn) write(b []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(upstreamWriteTimeout))
	if c.held || c.batch == nil || len(b) <= maxTLSRecord {
		return c.Conn.Write(b)
	}
	c.batch.collect()
	n, err := c.Conn.Write(b)
	if ferr := c.batch.flush(); ferr != nil && err == nil {
		return 0, ferr
	}
	return n, err
}

// holdWrites has the TLS records of everything written from now on
// collected, up to the next read (the end of a message: its last piece,
// the end-of-data line, then the wait for the reply), so that they leave
// in one write.
func (c *upstreamConn) holdWrites() {
	if c.batch != nil && !c.held {
		c.held = true
		c.batch.collect()
	}
}

// releaseWrites sends what holdWrites collected.
func (c *upstreamConn) releaseWrites() error {
	if !c.held {
		return nil
	}
	c.held = false
	return c.batch.flush()
}

// maxTLSRecord is the most data one TLS record carries.
const maxTLSRecord = 16 << 10

// maxCorked bounds the replies held back.
const maxCorked = 4 << 10

// cork holds reply b back when it answers a MAIL, RCPT or RSET and the
// client has already sent more (RFC 2920 §3.2: such replies may be stored
// and sent as a unit). The replies then go out with the next reply that is
// not held, or before clientConn next waits for the client: go-smtp reads
// on from pend without waiting, and the client waits for them all anyway.
// Replies that end the session are never held.
func (c *clientConn) cork(b []byte) bool {
	l := &c.line
	if len(c.pend) == 0 || c.handshaking || c.upgraded.Load() || !l.ended || l.headLen < 4 ||
		len(c.corked)+len(b) > maxCorked || bytes.HasPrefix(b, []byte("421")) || bytes.HasPrefix(b, []byte("221")) {
		return false
	}
	head := l.head[:4]
	if !hasPrefixFoldASCII(head, "MAIL") && !hasPrefixFoldASCII(head, "RCPT") && !hasPrefixFoldASCII(head, "RSET") {
		return false
	}
	c.corked = append(c.corked, b...)
	return true
}

// writeOut writes b to the client, behind any replies held back, in one
// write.
func (c *clientConn) writeOut(b []byte) (int, error) {
	if len(c.corked) == 0 {
		return c.Conn.Write(b)
	}
	c.corked = append(c.corked, b...)
	_, err := c.Conn.Write(c.corked)
	c.corked = c.corked[:0]
	if err != nil {
		return 0, err
	}
	return len(b), nil
}

// flushCorked writes the replies held back, before clientConn waits for
// the client.
func (c *clientConn) flushCorked() error {
	if len(c.corked) == 0 {
		return nil
	}
	c.Conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := c.Conn.Write(c.corked)
	c.corked = c.corked[:0]
	return err
}
