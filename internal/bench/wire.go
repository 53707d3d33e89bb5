package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// Wire limits of the benchmark's own clients.
const (
	// ioTimeout bounds every single protocol step (a command and its reply,
	// a whole FETCH or RETR, one message's DATA).
	ioTimeout = 2 * time.Minute
	// dialTimeout bounds one TCP connect.
	dialTimeout = 10 * time.Second
	// readBufSize is the buffered reader of every client connection; a
	// response line longer than this is read in pieces.
	readBufSize = 64 << 10
	// idleBufSize is the buffered reader of the idle sessions of the ramp.
	idleBufSize = 1 << 10
	// discardBufSize is the scratch buffer literal bytes are read into.
	discardBufSize = 256 << 10
	// maxLineFragments bounds the pieces of one over-long response line.
	maxLineFragments = 64
	// lineTailBytes of an over-long line are kept (a literal size is at
	// most 14 of them).
	lineTailBytes = 32
	// maxLiteral is the largest IMAP literal the client accepts.
	maxLiteral = 1 << 30
	// maxResponses bounds the lines read while waiting for one reply.
	maxResponses = 1 << 20
)

// errProtocol marks an unexpected reply from a server.
var errProtocol = errors.New("unexpected reply")

// wireConn is one client connection with a buffered reader.
type wireConn struct {
	c   net.Conn
	r   *bufio.Reader
	tag int // last IMAP tag number used
}

// dialWire connects to addr on loopback (xoauthd's plain listeners).
func dialWire(ctx context.Context, addr string) (*wireConn, error) {
	return dialWireSized(ctx, addr, readBufSize)
}

// dialWireSized is dialWire with a read buffer of bufSize bytes.
func dialWireSized(ctx context.Context, addr string, bufSize int) (*wireConn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &wireConn{c: c, r: bufio.NewReaderSize(c, bufSize)}, nil
}

// Close closes the connection.
func (w *wireConn) Close() error { return w.c.Close() }

// arm sets the deadline of the next protocol step.
func (w *wireConn) arm() { _ = w.c.SetDeadline(time.Now().Add(ioTimeout)) }

// send writes s in one write.
func (w *wireConn) send(s string) error {
	w.arm()
	_, err := io.WriteString(w.c, s)
	return err
}

// readLine returns the next line including CRLF. Of a line longer than the
// read buffer it returns the first piece, a space and the last
// lineTailBytes bytes: enough for a tag at the start and a literal size at
// the end.
func (w *wireConn) readLine() ([]byte, error) {
	line, err := w.r.ReadSlice('\n')
	if !errors.Is(err, bufio.ErrBufferFull) {
		return line, err
	}
	head := append(bytes.Clone(line), ' ')
	tail := make([]byte, 0, 2*lineTailBytes)
	for range maxLineFragments {
		frag, err := w.r.ReadSlice('\n')
		tail = append(tail, frag...)
		tail = tail[max(0, len(tail)-lineTailBytes):]
		if !errors.Is(err, bufio.ErrBufferFull) {
			return append(head, tail...), err
		}
	}
	return nil, fmt.Errorf("%w: a response line longer than %d bytes", errProtocol, maxLineFragments*w.r.Size())
}

// discard reads and drops n bytes through a scratch buffer.
func (w *wireConn) discard(n int64, scratch []byte) error {
	for n > 0 {
		k, err := w.r.Read(scratch[:min(n, int64(len(scratch)))])
		n -= int64(k)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// ---- IMAP (RFC 3501) ----

// imapLiteral returns the size of the literal announced at the end of an
// IMAP response line ("... {123}\r\n"), or -1 when there is none.
func imapLiteral(line []byte) int64 {
	line = bytes.TrimSuffix(line, []byte("\r\n"))
	if len(line) < 3 || line[len(line)-1] != '}' {
		return -1
	}
	open := bytes.LastIndexByte(line, '{')
	if open < 0 {
		return -1
	}
	n, err := strconv.ParseInt(string(line[open+1:len(line)-1]), 10, 64)
	if err != nil || n < 0 || n > maxLiteral {
		return -1
	}
	return n
}

// imapReply reads responses until the tagged one of tag and returns its
// status line and the total size of the literals before it.
func (w *wireConn) imapReply(tag string, scratch []byte) (status string, literals int64, err error) {
	prefix := []byte(tag + " ")
	for range maxResponses {
		line, err := w.readLine()
		if err != nil {
			return "", literals, err
		}
		if n := imapLiteral(line); n >= 0 {
			if err := w.discard(n, scratch); err != nil {
				return "", literals, err
			}
			literals += n
			continue
		}
		if bytes.HasPrefix(line, prefix) {
			return string(bytes.TrimRight(line[len(prefix):], "\r\n")), literals, nil
		}
	}
	return "", literals, fmt.Errorf("%w: no tagged reply within %d lines", errProtocol, maxResponses)
}

// imapCmd sends one command with a new tag and waits for its OK.
func (w *wireConn) imapCmd(cmd string, scratch []byte) (literals int64, err error) {
	w.tag++
	tag := "b" + strconv.Itoa(w.tag)
	if err := w.send(tag + " " + cmd + "\r\n"); err != nil {
		return 0, err
	}
	status, n, err := w.imapReply(tag, scratch)
	if err != nil {
		return n, fmt.Errorf("%s: %w", firstWord(cmd), err)
	}
	if len(status) < 2 || status[:2] != "OK" {
		return n, fmt.Errorf("%s: %w %q", firstWord(cmd), errProtocol, status)
	}
	return n, nil
}

// imapGreeting reads the server greeting.
func (w *wireConn) imapGreeting() error {
	w.arm()
	line, err := w.readLine()
	if err != nil {
		return fmt.Errorf("reading imap greeting: %w", err)
	}
	if !bytes.HasPrefix(line, []byte("* OK")) {
		return fmt.Errorf("imap greeting: %w %q", errProtocol, line)
	}
	return nil
}

// imapLogout sends LOGOUT and waits for its OK (or the server hanging up).
func (w *wireConn) imapLogout() error {
	_, err := w.imapCmd("LOGOUT", nil)
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// quoteIMAP writes s as an IMAP quoted string.
func quoteIMAP(s string) string {
	var b bytes.Buffer
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// firstWord returns s up to its first space.
func firstWord(s string) string {
	if i := bytes.IndexByte([]byte(s), ' '); i >= 0 {
		return s[:i]
	}
	return s
}

// ---- POP3 (RFC 1939) ----

// pop3End ends a multi-line POP3 response; the status line before the
// data always supplies the leading CRLF.
const pop3End = "\r\n.\r\n"

// pop3Terminator is pop3End as bytes.
var pop3Terminator = []byte(pop3End)

// pop3Status reads one status line and checks it is +OK (or "+ " for a
// SASL continuation when cont is set).
func (w *wireConn) pop3Status(cont bool) error {
	w.arm()
	line, err := w.readLine()
	if err != nil {
		return err
	}
	ok := bytes.HasPrefix(line, []byte("+OK")) || cont && bytes.HasPrefix(line, []byte("+ "))
	if !ok {
		return fmt.Errorf("%w %q", errProtocol, bytes.TrimRight(line, "\r\n"))
	}
	return nil
}

// pop3Cmd sends a command and checks its status line.
func (w *wireConn) pop3Cmd(cmd string, cont bool) error {
	if err := w.send(cmd + "\r\n"); err != nil {
		return err
	}
	if err := w.pop3Status(cont); err != nil {
		return fmt.Errorf("%s: %w", firstWord(cmd), err)
	}
	return nil
}

// pop3Multiline consumes a multi-line response body up to and including its
// terminator and returns the bytes consumed. The "+OK" line must have been
// read already.
func (w *wireConn) pop3Multiline() (int64, error) {
	var total int64
	tail := []byte("\r\n") // the status line's CRLF precedes the body
	for {
		if w.r.Buffered() == 0 {
			if _, err := w.r.Peek(1); err != nil {
				return total, err
			}
		}
		chunk, _ := w.r.Peek(w.r.Buffered())
		if end := findTerminator(tail, chunk); end >= 0 {
			_, _ = w.r.Discard(end)
			return total + int64(end), nil
		}
		tail = streamTail(tail, chunk)
		_, _ = w.r.Discard(len(chunk))
		total += int64(len(chunk))
	}
}

// findTerminator looks for pop3Terminator in tail+chunk, where tail holds
// the (at most len(pop3Terminator)-1) bytes of the stream just before chunk;
// it returns the offset in chunk just past the terminator, or -1.
func findTerminator(tail, chunk []byte) int {
	head := chunk[:min(len(chunk), len(pop3Terminator)-1)]
	joined := append(append(make([]byte, 0, len(tail)+len(head)), tail...), head...)
	if i := bytes.Index(joined, pop3Terminator); i >= 0 {
		return i + len(pop3Terminator) - len(tail)
	}
	if i := bytes.Index(chunk, pop3Terminator); i >= 0 {
		return i + len(pop3Terminator)
	}
	return -1
}

// streamTail returns the last len(pop3Terminator)-1 bytes of tail+chunk.
func streamTail(tail, chunk []byte) []byte {
	const keep = len(pop3End) - 1
	if len(chunk) >= keep {
		return append(tail[:0], chunk[len(chunk)-keep:]...)
	}
	joined := append(bytes.Clone(tail), chunk...)
	return append(tail[:0], joined[max(0, len(joined)-keep):]...)
}

// ---- SMTP (RFC 5321) ----

// smtpReply reads a possibly multi-line reply and checks its code.
func (w *wireConn) smtpReply(want string) error {
	w.arm()
	for range maxResponses {
		line, err := w.readLine()
		if err != nil {
			return err
		}
		if len(line) < 4 {
			return fmt.Errorf("%w %q", errProtocol, line)
		}
		if line[3] == '-' {
			continue
		}
		if string(line[:3]) != want {
			return fmt.Errorf("%w %q (want %s)", errProtocol, bytes.TrimRight(line, "\r\n"), want)
		}
		return nil
	}
	return fmt.Errorf("%w: endless multi-line reply", errProtocol)
}

// smtpCmd sends a command and checks the reply code.
func (w *wireConn) smtpCmd(cmd, want string) error {
	if err := w.send(cmd + "\r\n"); err != nil {
		return err
	}
	if err := w.smtpReply(want); err != nil {
		return fmt.Errorf("%s: %w", firstWord(cmd), err)
	}
	return nil
}

// smtpSend submits one message with MAIL, RCPT and DATA sent as one
// pipelined group (RFC 2920), then the data (which must end in CRLF and
// need no dot-stuffing) and the terminating dot.
func (w *wireConn) smtpSend(from, to string, data []byte) error {
	if err := w.send("MAIL FROM:<" + from + ">\r\nRCPT TO:<" + to + ">\r\nDATA\r\n"); err != nil {
		return err
	}
	for _, want := range []string{"250", "250", "354"} {
		if err := w.smtpReply(want); err != nil {
			return fmt.Errorf("MAIL/RCPT/DATA: %w", err)
		}
	}
	w.arm()
	if _, err := w.c.Write(data); err != nil {
		return err
	}
	if _, err := io.WriteString(w.c, ".\r\n"); err != nil {
		return err
	}
	if err := w.smtpReply("250"); err != nil {
		return fmt.Errorf("end of DATA: %w", err)
	}
	return nil
}
