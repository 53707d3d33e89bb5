package check

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/diagnose"
	"github.com/xoauthd/xoauthd/internal/xoauth2"
	"github.com/xoauthd/xoauthd/proxy"
)

// maxSASLSteps bounds the challenges of one XOAUTH2 exchange (a failure has
// one: the JSON error).
const maxSASLSteps = 3

// imapStep logs in to the IMAP upstream with XOAUTH2 as the mailbox (the
// SASL-IR form, RFC 4959), probes that the mailbox can be opened (Exchange's
// "authenticated but not connected") and counts INBOX's messages.
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

// probeIMAP runs one IMAP session: greeting, STARTTLS in starttls mode,
// CAPABILITY, AUTHENTICATE XOAUTH2, LIST "" "" (the probe for a mailbox the
// token cannot open), SELECT INBOX and LOGOUT.
func probeIMAP(ctx context.Context, d *proxy.Dialer, user, token string) (imapResult, error) {
	var res imapResult
	raw, err := d.Dial(ctx)
	if err != nil {
		return res, failed("connecting", err)
	}
	lc, stop := bounded(ctx, raw)
	defer stop()
	defer lc.Close()
	t := newTextConn(lc)
	greeting, err := t.readIMAPLine()
	if err != nil {
		return res, failed("reading the greeting", err)
	}
	if err := expectIMAPStatus(greeting, "OK"); err != nil {
		return res, failed("greeting", err)
	}
	caps := imapCapabilities(greeting)
	if d.Mode == proxy.TLSStartTLS {
		if _, err := t.imapCommand("S1", "STARTTLS"); err != nil {
			return res, failed("STARTTLS", err)
		}
		tc, err := d.StartTLS(ctx, lc.Conn)
		if err != nil {
			return res, failed("TLS handshake", err)
		}
		lc.Conn = tc
		if err := t.upgrade(lc); err != nil {
			return res, failed("STARTTLS", err)
		}
		caps = nil // RFC 9051 §6.2.1: capabilities change after STARTTLS
	}
	res.tls = tlsVersion(lc.Conn)
	if caps == nil {
		untagged, err := t.imapCommand("C1", "CAPABILITY")
		if err != nil {
			return res, failed("CAPABILITY", err)
		}
		for _, l := range untagged {
			if strings.HasPrefix(strings.ToUpper(l), "* CAPABILITY ") {
				caps = strings.Fields(strings.ToUpper(l[len("* CAPABILITY "):]))
			}
		}
	}
	if err := t.imapAuthenticate(hasWord(caps, "SASL-IR"), user, token); err != nil {
		return res, failed("XOAUTH2 login as "+user, err)
	}
	if _, err := t.imapCommand("A2", `LIST "" ""`); err != nil {
		return res, failed("opening the mailbox "+user, err)
	}
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

// imapAuthenticate runs AUTHENTICATE XOAUTH2. An error challenge (the JSON
// of RFC 7628 §3.2.2) gets the empty response the protocol asks for, then
// the server's final status.
func (t *textConn) imapAuthenticate(saslIR bool, user, token string) error {
	const tag = "A1"
	ir := xoauth2.Encode(user, token)
	cmd := tag + " AUTHENTICATE XOAUTH2"
	if saslIR {
		cmd += " " + ir
	}
	if err := t.writeLine(cmd); err != nil {
		return err
	}
	sentIR, steps := saslIR, 0
	for range maxSASLSteps + maxCheckResponses {
		line, err := t.readIMAPLine()
		if err != nil {
			return err
		}
		if strings.HasPrefix(line, "+") {
			if steps++; steps > maxSASLSteps {
				break
			}
			resp := ""
			if !sentIR {
				resp, sentIR = ir, true
			}
			if err := t.writeLine(resp); err != nil {
				return err
			}
			continue
		}
		if done, err := imapTagged(line, tag); done || err != nil {
			return err
		}
	}
	return errors.New("the server did not finish the login")
}

// expectIMAPStatus checks that line is a status response with status.
func expectIMAPStatus(line, status string) error {
	r, err := diagnose.ParseIMAP(line)
	if err != nil {
		return fmt.Errorf("unexpected greeting %q (hint: is this an IMAP server?)", clip(line))
	}
	if r.Status != status {
		return r
	}
	return nil
}

// imapCapabilities returns the capabilities of a "[CAPABILITY ...]" code,
// nil when line has none.
func imapCapabilities(line string) []string {
	upper := strings.ToUpper(line)
	i := strings.Index(upper, "[CAPABILITY ")
	if i < 0 {
		return nil
	}
	rest := upper[i+len("[CAPABILITY "):]
	end := strings.IndexByte(rest, ']')
	if end < 0 {
		return nil
	}
	return strings.Fields(rest[:end])
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

func hasWord(words []string, w string) bool {
	for _, v := range words {
		if strings.EqualFold(v, w) {
			return true
		}
	}
	return false
}

// clip shortens server text for an error message.
func clip(s string) string {
	const maxQuoted = 120
	if len(s) > maxQuoted {
		return s[:maxQuoted] + "..."
	}
	return s
}
