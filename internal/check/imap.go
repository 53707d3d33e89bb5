package check

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/imapfront"
	"github.com/xoauthd/xoauthd/internal/diagnose"
	"github.com/xoauthd/xoauthd/proxy"
)

// imapStep logs in to the IMAP upstream with XOAUTH2 as the mailbox (with
// SASL-IR, RFC 4959, when offered), probes that the mailbox can be opened
// (Exchange's "authenticated but not connected") and counts INBOX's
// messages.
func (c *Checker) imapStep(ctx context.Context, s *Step, d *proxy.Dialer, a config.Account, token string, acct diagnose.Account) {
	res, err := probeIMAP(ctx, d, a.Mailbox, token)
	s.TLS = res.tls
	if err != nil {
		s.failStage(err, acct)
		return
	}
	s.Messages = &res.messages
	s.pass(fmt.Sprintf("%s (%s): XOAUTH2 as %s; mailbox reachable; INBOX has %s",
		d.Addr, res.tls, a.Mailbox, Plural(res.messages, "message")))
}

// imapResult is what the IMAP probe measured.
type imapResult struct {
	tls      string // TLS version
	messages int    // in INBOX
}

// probeIMAP runs one IMAP session: the front's upstream login (greeting,
// STARTTLS in starttls mode, AUTHENTICATE XOAUTH2 as user, the LIST "" ""
// probe for a mailbox the token cannot open), then SELECT INBOX and LOGOUT.
func probeIMAP(ctx context.Context, d *proxy.Dialer, user, token string) (imapResult, error) {
	var res imapResult
	up, tlsVer, done, err := login(ctx, d, "XOAUTH2 login as "+user, user, func(conn net.Conn) (*imapfront.Upstream, net.Conn, error) {
		up, err := imapfront.LoginUpstream(ctx, conn, d, proxy.Account{Identity: user, Mailbox: user}, token, imapfront.LoginOptions{})
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
	untagged, err := t.imapCommand("A3", "SELECT INBOX")
	if err != nil {
		return res, failed("SELECT INBOX", err)
	}
	res.messages = imapExists(untagged)
	_, _ = t.imapCommand("A4", "LOGOUT")
	return res, nil
}

// imapCommand sends one command and reads its response up to the tagged
// status. A status other than OK, or an untagged BYE, is returned as a
// *diagnose.Reply.
func (t *textConn) imapCommand(tag, cmd string) (untagged []string, err error) {
	if err := t.writeLine(tag + " " + cmd); err != nil {
		return nil, err
	}
	for range maxCheckResponses {
		line, err := t.readIMAPLine()
		if err != nil {
			return nil, err
		}
		if done, err := imapTagged(line, tag); done || err != nil {
			return untagged, err
		}
		untagged = append(untagged, line)
	}
	return nil, fmt.Errorf("the server sent more than %d responses to %s", maxCheckResponses, cmd)
}

// imapTagged reports whether line ends the command tagged tag, with the
// error it carries; an untagged BYE ends it too. Other untagged lines are
// not the end.
func imapTagged(line, tag string) (bool, error) {
	if strings.HasPrefix(line, "* ") {
		if r, err := diagnose.ParseIMAP(line); err == nil && r.Status == "BYE" {
			return true, r
		}
		return false, nil
	}
	if strings.HasPrefix(line, "+") {
		return true, fmt.Errorf("unexpected continuation request %q", clip(line))
	}
	r, err := diagnose.ParseIMAP(line)
	if err != nil || !strings.HasPrefix(line, tag+" ") {
		return true, fmt.Errorf("unexpected response %q", clip(line))
	}
	if r.Status != "OK" {
		return true, r
	}
	return true, nil
}

// imapExists returns the count of the last "* N EXISTS" response.
func imapExists(untagged []string) int {
	n := 0
	for _, l := range untagged {
		f := strings.Fields(l)
		if len(f) == 3 && f[0] == "*" && strings.EqualFold(f[2], "EXISTS") {
			if v, err := strconv.Atoi(f[1]); err == nil && v >= 0 {
				n = v
			}
		}
	}
	return n
}

// clip shortens server text for an error message.
func clip(s string) string {
	const maxQuoted = 120
	if len(s) > maxQuoted {
		return s[:maxQuoted] + "..."
	}
	return s
}
