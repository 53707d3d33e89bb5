package check

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/diagnose"
	"github.com/xoauthd/xoauthd/pop3front"
	"github.com/xoauthd/xoauthd/proxy"
)

// pop3Step logs in to the POP3 upstream with XOAUTH2 as the mailbox
// (RFC 5034) and counts the maildrop with STAT.
func (c *Checker) pop3Step(ctx context.Context, s *Step, d *proxy.Dialer, a config.Account, token string, acct diagnose.Account) {
	res, err := probePOP3(ctx, d, a.Mailbox, token)
	s.TLS = res.tls
	if err != nil {
		s.failStage(err, acct)
		return
	}
	s.Messages, s.Octets = &res.messages, &res.octets
	s.pass(fmt.Sprintf("%s (%s): XOAUTH2 as %s; %s (%d bytes)",
		d.Addr, res.tls, a.Mailbox, Plural(res.messages, "message"), res.octets))
}

// pop3Result is what the POP3 probe measured.
type pop3Result struct {
	tls      string
	messages int
	octets   int64
}

// probePOP3 runs one POP3 session: the front's upstream login (greeting,
// STLS in starttls mode, AUTH XOAUTH2 as user), then STAT and QUIT.
func probePOP3(ctx context.Context, d *proxy.Dialer, user, token string) (pop3Result, error) {
	var res pop3Result
	up, tlsVer, done, err := login(ctx, d, "XOAUTH2 login as "+user, user, func(conn net.Conn) (*pop3front.Upstream, net.Conn, error) {
		up, err := pop3front.LoginUpstream(ctx, conn, d, proxy.Account{Identity: user, Mailbox: user}, token, pop3front.LoginOptions{})
		if err != nil {
			return nil, nil, err
		}
		return up, up.Conn, nil
	})
	res.tls = tlsVer
	if err != nil {
		return res, err
	}
	defer done()
	defer up.Conn.Close()
	t := &textConn{conn: up.Conn, r: up.Reader}
	stat, err := t.pop3Command("STAT")
	if err != nil {
		return res, failed("STAT", err)
	}
	f := strings.Fields(stat.Text)
	if len(f) < 2 {
		return res, failed("STAT", fmt.Errorf("unexpected answer %q", clip(stat.Line)))
	}
	n, err1 := strconv.Atoi(f[0])
	size, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil || n < 0 || size < 0 {
		return res, failed("STAT", fmt.Errorf("unexpected answer %q", clip(stat.Line)))
	}
	res.messages, res.octets = n, size
	_, _ = t.pop3Command("QUIT")
	return res, nil
}

// pop3Reply reads one status line; -ERR is returned as a *diagnose.Reply.
func (t *textConn) pop3Reply() (*diagnose.Reply, error) {
	line, err := t.readLine()
	if err != nil {
		return nil, err
	}
	r, err := diagnose.ParsePOP3(line)
	if err != nil {
		return nil, fmt.Errorf("unexpected answer %q (hint: is this a POP3 server?)", clip(line))
	}
	if r.Status != "+OK" {
		return nil, r
	}
	return r, nil
}

func (t *textConn) pop3Command(cmd string) (*diagnose.Reply, error) {
	if err := t.writeLine(cmd); err != nil {
		return nil, err
	}
	return t.pop3Reply()
}
