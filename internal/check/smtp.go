package check

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/diagnose"
	"github.com/xoauthd/xoauthd/proxy"
	"github.com/xoauthd/xoauthd/smtpfront"
)

// smtpStep says EHLO, STARTTLS (in starttls mode) and AUTH XOAUTH2 as the
// identity (Exchange refuses a shared mailbox as the SMTP user), then with
// --send-test sends a short message from the account's mailbox.
func (c *Checker) smtpStep(ctx context.Context, s *Step, d *proxy.Dialer, a config.Account, token string, acct diagnose.Account) {
	acct.Sender = a.Mailbox
	res, err := c.probeSMTP(ctx, d, a, token)
	s.TLS, s.TestReply = res.tls, res.reply
	if err != nil {
		s.failStage(err, acct)
		return
	}
	summary := fmt.Sprintf("%s (%s): AUTH XOAUTH2 as %s", d.Addr, res.tls, a.Identity)
	if c.opts.SendTo != "" {
		summary += "; test message from " + a.Mailbox + " to " + c.opts.SendTo + " accepted"
		s.Details = append(s.Details, "server reply: "+res.reply)
	}
	s.pass(summary)
}

// smtpResult is what the SMTP probe measured.
type smtpResult struct {
	tls   string
	reply string // the final reply to the test message (holds the queue id)
}

// probeSMTP runs one submission session: the front's upstream login
// (greeting, EHLO, STARTTLS in starttls mode, EHLO, AUTH XOAUTH2 as the
// identity), then with SendTo the test message, and QUIT.
func (c *Checker) probeSMTP(ctx context.Context, d *proxy.Dialer, a config.Account, token string) (smtpResult, error) {
	var res smtpResult
	acct := proxy.Account{Login: a.Login, Identity: a.Identity, Mailbox: a.Mailbox}
	cl, tlsVer, done, err := login(ctx, d, "AUTH XOAUTH2 as "+a.Identity, a.Mailbox, func(conn net.Conn) (*smtp.Client, net.Conn, error) {
		up, err := smtpfront.LoginUpstream(ctx, conn, d, acct, token, smtpfront.LoginOptions{Domain: "localhost"})
		if err != nil {
			return nil, nil, err
		}
		return up.Client, up.Conn, nil
	})
	res.tls = tlsVer
	if err != nil {
		return res, err
	}
	defer done()
	defer cl.Close()
	cl.CommandTimeout, cl.SubmissionTimeout = c.opts.StepTimeout, c.opts.StepTimeout
	if c.opts.SendTo != "" {
		if res.reply, err = c.sendTest(cl, a); err != nil {
			return res, err
		}
	}
	_ = cl.Quit()
	return res, nil
}

// sendTest sends the test message and returns the final reply.
func (c *Checker) sendTest(cl *smtp.Client, a config.Account) (string, error) {
	if err := cl.Mail(a.Mailbox, nil); err != nil {
		return "", failed("MAIL FROM:<"+a.Mailbox+">", err)
	}
	if err := cl.Rcpt(c.opts.SendTo, nil); err != nil {
		return "", failed("RCPT TO:<"+c.opts.SendTo+">", err)
	}
	w, err := cl.Data()
	if err != nil {
		return "", failed("DATA", err)
	}
	if _, err := w.Write(testMessage(a, c.opts.SendTo, c.opts.Now())); err != nil {
		return "", failed("sending the test message", err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", failed("sending the test message", err)
	}
	return "250 " + strings.Join(strings.Fields(resp.StatusText), " "), nil
}

// testMessage is the short message --send-test sends (RFC 5322).
func testMessage(a config.Account, to string, now time.Time) []byte {
	id := make([]byte, 12)
	_, _ = rand.Read(id)
	domain := "xoauthd.invalid"
	if at := strings.LastIndexByte(a.Mailbox, '@'); at >= 0 {
		domain = a.Mailbox[at+1:]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: xoauthd check test message\r\n", a.Mailbox, to)
	fmt.Fprintf(&b, "Date: %s\r\nMessage-ID: <%s@%s>\r\n", now.Format(time.RFC1123Z), hex.EncodeToString(id), domain)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	fmt.Fprintf(&b, "This message was sent by \"xoauthd check --send-test\" for the account %s\r\n"+
		"(identity %s, mailbox %s). It arrived, so sending through xoauthd's upstream works.\r\n",
		a.Login, a.Identity, a.Mailbox)
	return []byte(b.String())
}
