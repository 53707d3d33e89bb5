package smtpfront

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/proxy"
)

// Bounds of an upstream reply read before STARTTLS.
const (
	maxReplyLine  = 1000 // RFC 5321 §4.5.3.1.5: 512; some servers send more
	maxReplyLines = 100
)

// startTLS runs the plaintext part of a starttls upstream session on conn:
// the greeting, EHLO, STARTTLS, and the handshake verified with d.TLS. It
// returns the TLS connection and the greeting, for go-smtp's client to
// read first. Bytes the upstream sends behind its STARTTLS reply are
// refused (they would be taken as sent over TLS).
func startTLS(ctx context.Context, conn net.Conn, d *proxy.Dialer, domain string) (net.Conn, *recordBatcher, []byte, error) {
	fail := func(err error) (net.Conn, *recordBatcher, []byte, error) {
		return nil, nil, nil, fmt.Errorf("greeting, EHLO and STARTTLS at %s: %w (%w: check that the upstream offers STARTTLS on this port, or set upstream_tls: implicit)", d.Addr, err, proxy.ErrUpstreamUnavailable)
	}
	conn.SetDeadline(time.Now().Add(loginStepTimeout(d)))
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	br := bufio.NewReaderSize(conn, 1024)
	greeting, err := expectReply(br, 220)
	if err != nil {
		return fail(fmt.Errorf("greeting: %w", err))
	}
	if _, err := fmt.Fprintf(conn, "EHLO %s\r\n", domain); err != nil {
		return fail(err)
	}
	ehlo, err := expectReply(br, 250)
	if err != nil {
		return fail(fmt.Errorf("EHLO: %w", err))
	}
	if !offersStartTLS(ehlo) {
		return fail(errors.New("the upstream does not offer STARTTLS"))
	}
	if _, err := conn.Write([]byte("STARTTLS\r\n")); err != nil {
		return fail(err)
	}
	if _, err := expectReply(br, 220); err != nil {
		return fail(fmt.Errorf("STARTTLS: %w", err))
	}
	if br.Buffered() > 0 {
		return fail(errors.New("the upstream sent data behind its STARTTLS reply"))
	}
	if !stop() {
		return fail(ctx.Err())
	}
	conn.SetDeadline(time.Time{})
	batch := &recordBatcher{Conn: conn}
	tc, err := d.StartTLS(ctx, batch)
	if err != nil {
		return nil, nil, nil, err
	}
	return tc, batch, greeting, nil
}

// recordBatcher is the connection under the upstream TLS layer in starttls
// mode. crypto/tls sends each record (at most 16 KiB of data) with a write
// of its own; while collecting (see upstreamConn.write), the batcher keeps
// the records of one large write and sends them together, so that a 64 KiB
// piece of a message costs one write instead of four. Used by one
// goroutine at a time (the session's, under its mu).
type recordBatcher struct {
	net.Conn
	buf *[]byte // collected records; from batchBufs while collecting
}

// batchBufs recycle the batcher's buffers: one holds the records of a
// write of up to encBufSize/2 bytes.
var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, encBufSize/2+8<<10); return &b }}

// collect starts collecting records.
func (b *recordBatcher) collect() {
	b.buf = batchBufs.Get().(*[]byte)
}

func (b *recordBatcher) Write(p []byte) (int, error) {
	if b.buf == nil {
		return b.Conn.Write(p)
	}
	*b.buf = append(*b.buf, p...)
	return len(p), nil
}

// flush sends the collected records in one write and stops collecting.
func (b *recordBatcher) flush() error {
	bp := b.buf
	if bp == nil {
		return nil
	}
	b.buf = nil
	var err error
	if len(*bp) > 0 {
		_, err = b.Conn.Write(*bp)
	}
	*bp = (*bp)[:0]
	batchBufs.Put(bp)
	return err
}

// expectReply reads one reply and returns it as sent (every line, CRLF
// included); a reply with another code than want is an *smtp.SMTPError.
func expectReply(br *bufio.Reader, want int) ([]byte, error) {
	var raw []byte
	var text []string
	code := 0
	for i := 0; ; i++ {
		if i == maxReplyLines {
			return nil, fmt.Errorf("reply longer than %d lines", maxReplyLines)
		}
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull || len(line) > maxReplyLine {
			return nil, fmt.Errorf("reply line longer than %d bytes", maxReplyLine)
		}
		if err != nil {
			return nil, err
		}
		raw = append(raw, line...)
		l := strings.TrimRight(string(line), "\r\n")
		c, err := strconv.Atoi(prefix(l, 3))
		if err != nil || c < 200 || c > 599 || len(l) > 3 && l[3] != ' ' && l[3] != '-' {
			return nil, fmt.Errorf("malformed reply line %q", l)
		}
		if code != 0 && c != code {
			return nil, fmt.Errorf("reply lines with codes %d and %d", code, c)
		}
		code = c
		text = append(text, strings.TrimPrefix(l[3:], "-"))
		if len(l) == 3 || l[3] == ' ' {
			break
		}
	}
	if code != want {
		return nil, replyError(code, text)
	}
	return raw, nil
}

// replyError makes an upstream reply an *smtp.SMTPError as go-smtp's client
// does: the enhanced code taken from the text of the first line.
func replyError(code int, lines []string) *smtp.SMTPError {
	for i := range lines {
		lines[i] = strings.TrimPrefix(lines[i], " ")
	}
	se := &smtp.SMTPError{Code: code, EnhancedCode: smtp.NoEnhancedCode, Message: strings.Join(lines, "\n")}
	if f := strings.SplitN(lines[0], " ", 2); len(f) == 2 {
		if ec, ok := parseEnhanced(f[0]); ok && ec[0] == code/100 {
			se.EnhancedCode = ec
			se.Message = f[1]
			for _, l := range lines[1:] {
				se.Message += "\n" + strings.TrimPrefix(l, f[0]+" ")
			}
		}
	}
	return se
}

func parseEnhanced(s string) (smtp.EnhancedCode, bool) {
	var ec smtp.EnhancedCode
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return ec, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 999 || len(p) > 3 {
			return ec, false
		}
		ec[i] = n
	}
	return ec, true
}

// offersStartTLS reports whether an EHLO reply lists STARTTLS (the first
// line is the server's name, the others its extensions).
func offersStartTLS(reply []byte) bool {
	for _, line := range bytes.Split(reply, []byte("\n"))[1:] {
		line = bytes.TrimRight(line, "\r")
		if len(line) > 4 && bytes.EqualFold(bytes.TrimSpace(line[4:]), []byte("STARTTLS")) {
			return true
		}
	}
	return false
}

func prefix(s string, n int) string {
	if len(s) < n {
		return s
	}
	return s[:n]
}
