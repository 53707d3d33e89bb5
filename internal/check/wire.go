package check

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/xoauthd/xoauthd/proxy"
)

// Bounds of what the check reads from an upstream.
const (
	// maxCheckSession bounds everything read from one upstream session.
	maxCheckSession = 4 << 20
	// maxCheckLine bounds one reply line (IMAP, POP3; SMTP lines are far
	// shorter than the session bound).
	maxCheckLine = 64 << 10
	// maxCheckLiteral bounds one IMAP literal inside a response.
	maxCheckLiteral = 1 << 20
	// maxCheckResponses bounds the untagged responses to one IMAP command.
	maxCheckResponses = 10000
)

// errSessionTooLong is returned when an upstream sends more than
// maxCheckSession bytes.
var errSessionTooLong = fmt.Errorf("the server sent more than %d bytes in one session", maxCheckSession)

// limitConn is a net.Conn that fails reads after maxCheckSession bytes.
type limitConn struct {
	net.Conn
	left int64
}

func (c *limitConn) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, errSessionTooLong
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.Conn.Read(p)
	c.left -= int64(n)
	return n, err
}

// bounded wraps conn with the session bound and ties it to ctx: when ctx
// ends, pending reads and writes fail at once. stop releases the tie.
func bounded(ctx context.Context, conn net.Conn) (c *limitConn, stop func() bool) {
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop = context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	return &limitConn{Conn: conn, left: maxCheckSession}, stop
}

// textConn is a line-oriented view of one logged-in upstream connection:
// the commands the check sends after the front's login.
type textConn struct {
	conn net.Conn
	r    *bufio.Reader
}

// readLine returns one line without its CRLF.
func (t *textConn) readLine() (string, error) {
	line, err := t.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", fmt.Errorf("the server sent a line longer than %d bytes", t.r.Size())
	}
	if err != nil {
		if errors.Is(err, io.EOF) && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return "", err
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}

// writeLine sends one line with CRLF.
func (t *textConn) writeLine(s string) error {
	_, err := io.WriteString(t.conn, s+"\r\n")
	return err
}

// readIMAPLine reads one IMAP response line, skipping over literals
// ({n} or {n+} at a line's end, RFC 9051 §4.3): their bytes are replaced by
// "{}" so a response stays one line.
func (t *textConn) readIMAPLine() (string, error) {
	var b strings.Builder
	for {
		line, err := t.readLine()
		if err != nil {
			return "", err
		}
		n, ok := literalSize(line)
		if !ok {
			b.WriteString(line)
			return b.String(), nil
		}
		if n > maxCheckLiteral || b.Len()+len(line) > maxCheckLine {
			return "", fmt.Errorf("the server sent a response larger than %d bytes", maxCheckLine)
		}
		b.WriteString(line[:strings.LastIndexByte(line, '{')] + "{}")
		if _, err := io.CopyN(io.Discard, t.r, n); err != nil {
			return "", err
		}
	}
}

// literalSize reads the size of a literal announced at the end of line.
func literalSize(line string) (int64, bool) {
	if !strings.HasSuffix(line, "}") {
		return 0, false
	}
	open := strings.LastIndexByte(line, '{')
	if open < 0 {
		return 0, false
	}
	digits := strings.TrimSuffix(line[open+1:len(line)-1], "+")
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n < 0 || digits == "" || digits[0] == '+' {
		return 0, false
	}
	return n, true
}

// tlsVersion names the TLS version of the first TLS connection among
// conns, "" when none is TLS.
func tlsVersion(conns ...net.Conn) string {
	for _, c := range conns {
		if tc, ok := c.(*tls.Conn); ok {
			return tls.VersionName(tc.ConnectionState().Version)
		}
	}
	return ""
}

// login dials d and runs run, a front's upstream login, on the
// connection, bounded (see bounded) and tied to ctx until done is called.
// run returns the logged-in session and the connection it ended on (TLS after
// STARTTLS). tlsVer is the TLS version in use, as far as the session got;
// a failed login comes back named by its stage, xoauth2 naming the
// XOAUTH2 exchange and mailbox the mailbox probe.
func login[T any](ctx context.Context, d *proxy.Dialer, xoauth2, mailbox string,
	run func(conn net.Conn) (T, net.Conn, error)) (up T, tlsVer string, done func() bool, err error) {
	raw, err := d.Dial(ctx)
	if err != nil {
		return up, "", nil, failed("connecting", err)
	}
	lc, stop := bounded(ctx, raw)
	up, conn, err := run(lc)
	if err != nil {
		stop()
		return up, tlsVersion(raw), nil, failed(loginStage(err, xoauth2, mailbox), err)
	}
	return up, tlsVersion(conn, raw), stop, nil
}

// loginStage names the stage of a failed front login for a summary: login
// for the XOAUTH2 exchange, the mailbox probe with the mailbox's name.
func loginStage(err error, login, mailbox string) string {
	switch st := proxy.StageOf(err); st {
	case proxy.StageLogin:
		return login
	case proxy.StageMailbox:
		return "opening the mailbox " + mailbox
	case "":
		return "logging in"
	default:
		return st
	}
}
