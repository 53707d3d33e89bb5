package memupstream

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// pop3Capabilities is the CAPA answer (RFC 2449 §5), one per line.
var pop3Capabilities = []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "SASL " + mechanism, "IMPLEMENTATION memupstream"}

// errPOP3LineTooLong is returned by readLine for a line over its limit.
var errPOP3LineTooLong = errors.New("line too long")

// pop3Conn is one POP3 session.
type pop3Conn struct {
	p    *POP3
	conn net.Conn
	r    *bufio.Reader // maxPOP3AuthLine bytes
	w    *bufio.Writer

	user   string    // set by a successful AUTH: the TRANSACTION state
	drop   *maildrop // set with user
	errors int       // bad commands so far
	fault  POP3Fault // of this connection
	tls    bool      // STLS done
}

// errFaultClose ends a session that a fault closes.
var errFaultClose = errors.New("closed by fault")

// run greets and serves commands until QUIT, an error or too many bad
// commands.
func (c *pop3Conn) run() {
	switch c.fault {
	case POP3FaultCloseMidGreeting:
		_, _ = c.w.WriteString("+OK memup")
		_ = c.flush()
		return
	case POP3FaultBadGreeting:
		_ = c.reply("-ERR [SYS/TEMP] Too busy")
		return
	}
	if c.reply("+OK memupstream POP3 ready") != nil {
		return
	}
	for {
		quit, err := c.command()
		if errors.Is(err, errPOP3LineTooLong) {
			_ = c.reply("-ERR Line too long")
		}
		if quit || err != nil {
			return
		}
	}
}

// command reads and answers one command.
func (c *pop3Conn) command() (quit bool, err error) {
	line, err := c.readLine(maxPOP3Line)
	if err != nil {
		return false, err
	}
	cmd, err := parsePOP3Command(line)
	switch {
	case err != nil:
		return false, c.bad("-ERR Syntax error: " + err.Error())
	case c.user == "":
		return c.authorization(cmd)
	default:
		return c.transaction(cmd)
	}
}

// end releases the maildrop of a session that did not QUIT: nothing it
// marked is deleted.
func (c *pop3Conn) end() {
	if c.drop != nil {
		c.drop.close()
		c.drop = nil
		c.p.unlock(c.user)
	}
}

// authorization handles a command in the AUTHORIZATION state.
func (c *pop3Conn) authorization(cmd pop3Command) (quit bool, err error) {
	switch cmd.name {
	case "CAPA":
		caps := pop3Capabilities
		if c.p.tls != nil && !c.tls {
			caps = append(slices.Clone(caps), "STLS")
		}
		return false, c.multiline("+OK Capability list follows", caps)
	case "STLS":
		return false, c.stls()
	case "AUTH":
		return false, c.auth(cmd.args)
	case "QUIT":
		return true, c.reply("+OK Bye")
	case "USER", "PASS", "APOP":
		return false, c.bad("-ERR [AUTH] Use AUTH " + mechanism)
	}
	return false, c.bad("-ERR Command not valid before login")
}

// auth runs AUTH (RFC 5034 §4): without arguments it lists the mechanisms;
// XOAUTH2 takes its response on the command line ("=" is empty) or on the
// line after "+ ".
func (c *pop3Conn) auth(args []string) error {
	if len(args) == 0 {
		return c.multiline("+OK", []string{mechanism})
	}
	if !strings.EqualFold(args[0], mechanism) || c.fault == POP3FaultNoXOAUTH2 {
		return c.bad("-ERR Unrecognized authentication type")
	}
	if c.fault == POP3FaultCloseOnAuth {
		return errFaultClose
	}
	var resp string
	if len(args) == 2 {
		resp = args[1]
	} else {
		if err := c.reply("+ "); err != nil {
			return err
		}
		line, err := c.readLine(maxPOP3AuthLine)
		if err != nil {
			return err
		}
		resp = string(line)
	}
	if resp == "*" {
		return c.bad("-ERR [AUTH] Authentication cancelled")
	}
	raw, err := decodeSASL(resp)
	if err != nil {
		return c.bad("-ERR [AUTH] Invalid base64 in the XOAUTH2 response")
	}
	return c.login(raw)
}

// login checks an XOAUTH2 response and opens the user's maildrop. A
// rejected token gets the JSON error challenge and, after the client's
// response to it, the final -ERR [AUTH].
func (c *pop3Conn) login(raw []byte) error {
	c.p.sawAuth()
	switch c.fault {
	case POP3FaultRejectAlways:
		return c.bad("-ERR Authentication failure: unknown user name or bad password.")
	case POP3FaultTempFail:
		return c.bad("-ERR [SYS/TEMP] Temporary authentication failure.")
	}
	user, token, err := parseResponse(raw)
	if err != nil {
		return c.bad("-ERR [AUTH] Invalid XOAUTH2 response")
	}
	if c.p.srv.validate(user, token) != nil {
		challenge := base64.StdEncoding.EncodeToString(c.p.srv.errorChallenge())
		if err := c.reply("+ " + challenge); err != nil {
			return err
		}
		after, err := c.readLine(maxPOP3AuthLine)
		if err != nil {
			return err
		}
		c.p.sawAfterChallenge(string(after))
		return c.bad("-ERR [AUTH] Authentication failure: unknown user name or bad password.")
	}
	if c.p.srv.user(user) == nil {
		return c.reply("-ERR [SYS/PERM] No mailbox for this user")
	}
	if !c.p.lock(user) {
		return c.reply("-ERR [IN-USE] The mailbox is in use by another POP3 session")
	}
	drop, err := openMaildrop(c.p.ctx, c.p.access, user)
	if err != nil {
		c.p.unlock(user)
		c.p.log.Debug("pop3 maildrop failed", "component", "memupstream", "err", err)
		return c.reply("-ERR [SYS/TEMP] The mailbox cannot be opened now")
	}
	c.user, c.drop = user, drop
	return c.reply("+OK User successfully authenticated.")
}

// stls upgrades the connection to TLS (RFC 2595 §4) where the upstream
// offers it.
func (c *pop3Conn) stls() error {
	if c.p.tls == nil || c.tls {
		return c.bad("-ERR Command not permitted when TLS active")
	}
	if c.r.Buffered() > 0 {
		// Commands pipelined after STLS would be read as if they came
		// over TLS (RFC 2595 §4 forbids them).
		return errors.New("commands pipelined after STLS")
	}
	if err := c.reply("+OK Begin TLS negotiation"); err != nil {
		return err
	}
	conn := tls.Server(c.conn, c.p.tls)
	_ = conn.SetDeadline(time.Now().Add(pop3WriteTimeout))
	if err := conn.Handshake(); err != nil {
		return err
	}
	_ = conn.SetDeadline(time.Time{})
	c.conn, c.tls = conn, true
	c.r.Reset(conn)
	c.w.Reset(conn)
	return nil
}

// transaction handles a command in the TRANSACTION state (RFC 1939 §5).
func (c *pop3Conn) transaction(cmd pop3Command) (quit bool, err error) {
	switch cmd.name {
	case "STAT":
		n, size := c.drop.stat()
		return false, c.reply(fmt.Sprintf("+OK %d %d", n, size))
	case "LIST", "UIDL":
		return false, c.list(cmd)
	case "RETR", "TOP":
		return false, c.retrieve(cmd)
	case "DELE":
		msg, n, failure := c.message(cmd.args, 1)
		if failure != "" {
			return false, c.bad(failure)
		}
		msg.deleted = true
		return false, c.reply(fmt.Sprintf("+OK Message %d deleted", n))
	case "NOOP":
		return false, c.reply("+OK")
	case "RSET":
		c.drop.reset()
		n, size := c.drop.stat()
		return false, c.reply(fmt.Sprintf("+OK Maildrop has %d messages (%d octets)", n, size))
	case "CAPA":
		return false, c.multiline("+OK Capability list follows", pop3Capabilities)
	case "QUIT":
		return true, c.quit()
	}
	return false, c.bad("-ERR Command not valid after login")
}

// list answers LIST or UIDL, for one message or all.
func (c *pop3Conn) list(cmd pop3Command) error {
	item := func(n int, msg *dropMsg) string {
		if cmd.name == "UIDL" {
			return fmt.Sprintf("%d %d.%d", n, c.drop.uidValidity, msg.uid)
		}
		return fmt.Sprintf("%d %d", n, msg.size)
	}
	if len(cmd.args) > 0 {
		msg, n, failure := c.message(cmd.args, 1)
		if failure != "" {
			return c.bad(failure)
		}
		return c.reply("+OK " + item(n, msg))
	}
	var lines []string
	for i := range c.drop.msgs {
		if msg := &c.drop.msgs[i]; !msg.deleted {
			lines = append(lines, item(i+1, msg))
		}
	}
	n, size := c.drop.stat()
	return c.multiline(fmt.Sprintf("+OK %d messages (%d octets)", n, size), lines)
}

// retrieve answers RETR msg or TOP msg n.
func (c *pop3Conn) retrieve(cmd pop3Command) error {
	want, bodyLines := 1, -1
	if cmd.name == "TOP" {
		want = 2
	}
	msg, _, failure := c.message(cmd.args, want)
	if failure != "" {
		return c.bad(failure)
	}
	if cmd.name == "TOP" {
		var ok bool
		if bodyLines, ok = parseDecimal(cmd.args[1]); !ok {
			return c.bad("-ERR Syntax error: TOP needs a message number and a line count")
		}
	}
	content, err := c.drop.content(msg)
	if err != nil {
		c.p.log.Debug("pop3 fetch failed", "component", "memupstream", "err", err)
		return c.reply("-ERR [SYS/TEMP] The message cannot be read now")
	}
	if err := c.reply(fmt.Sprintf("+OK %d octets", msg.size)); err != nil {
		return err
	}
	if err := writeDotStuffed(c.w, content, bodyLines); err != nil {
		return err
	}
	return c.flush()
}

// message parses the message number of a command that takes want
// arguments and returns that message, or the -ERR line to answer.
func (c *pop3Conn) message(args []string, want int) (msg *dropMsg, n int, failure string) {
	if len(args) != want {
		return nil, 0, "-ERR Syntax error: wrong number of arguments"
	}
	n, ok := parseMsgNum(args[0])
	if !ok {
		return nil, 0, "-ERR Syntax error: not a message number"
	}
	msg, err := c.drop.get(n)
	switch {
	case errors.Is(err, errDeleted):
		return nil, 0, fmt.Sprintf("-ERR Message %d already deleted", n)
	case err != nil:
		return nil, 0, fmt.Sprintf("-ERR No such message %d", n)
	}
	return msg, n, ""
}

// quit enters the UPDATE state: the marked messages are removed.
func (c *pop3Conn) quit() error {
	if err := c.drop.commit(); err != nil {
		c.p.log.Debug("pop3 update failed", "component", "memupstream", "err", err)
		return c.reply("-ERR [SYS/TEMP] Some deleted messages were not removed")
	}
	n, _ := c.drop.stat()
	return c.reply(fmt.Sprintf("+OK Bye (%d messages left)", n))
}

// bad answers a bad command with line and counts it; too many end the
// session.
func (c *pop3Conn) bad(line string) error {
	c.errors++
	if c.errors >= maxPOP3Errors {
		_ = c.reply(line)
		_ = c.reply("-ERR Too many errors, closing")
		return errors.New("too many bad commands")
	}
	return c.reply(line)
}

// reply writes one response line.
func (c *pop3Conn) reply(line string) error {
	_, _ = c.w.WriteString(line)
	_, _ = c.w.WriteString("\r\n")
	return c.flush()
}

// multiline writes a status line, lines dot-stuffed, and the final ".".
func (c *pop3Conn) multiline(status string, lines []string) error {
	_, _ = c.w.WriteString(status + "\r\n")
	for _, l := range lines {
		if len(l) > 0 && l[0] == '.' {
			_ = c.w.WriteByte('.')
		}
		_, _ = c.w.WriteString(l + "\r\n")
	}
	_, _ = c.w.WriteString(".\r\n")
	return c.flush()
}

func (c *pop3Conn) flush() error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(pop3WriteTimeout))
	return c.w.Flush()
}

// readLine reads one line of at most limit bytes, CRLF included, and
// returns it without the line end.
func (c *pop3Conn) readLine(limit int) ([]byte, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(pop3IdleTimeout))
	line, err := c.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) || len(line) > limit {
		return nil, errPOP3LineTooLong
	}
	if err != nil {
		return nil, err
	}
	return trimEOL(line), nil
}

// decodeSASL decodes a base64 SASL response; "=" is the empty response.
func decodeSASL(s string) ([]byte, error) {
	if s == "=" {
		return []byte{}, nil
	}
	return base64.StdEncoding.DecodeString(s)
}
