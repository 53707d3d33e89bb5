package main

import (
	"context"
	"encoding/base64"
	"fmt"

	"github.com/xoauthd/xoauthd/internal/xoauth2"
)

// side says how the benchmark reaches the upstream.
type side int

const (
	direct  side = iota // straight to the upstream, TLS and XOAUTH2 by the benchmark
	through             // plain loopback to xoauthd with the local password
)

func (s side) String() string {
	if s == direct {
		return "direct"
	}
	return "through"
}

// smtpHello is the EHLO name of the benchmark's SMTP client.
const smtpHello = "bench.localhost"

// imapSession returns an IMAP connection that is logged in.
func (e *env) imapSession(ctx context.Context, s side) (*wireConn, error) {
	return e.imapSessionSized(ctx, s, readBufSize)
}

// imapSessionSized is imapSession with a read buffer of bufSize bytes.
func (e *env) imapSessionSized(ctx context.Context, s side, bufSize int) (*wireConn, error) {
	addr, tlsConf := e.imap, e.upTLS
	if s == direct {
		addr = e.upIMAP
	} else {
		tlsConf = nil
	}
	w, err := dialWireSized(ctx, addr, tlsConf, bufSize)
	if err != nil {
		return nil, fmt.Errorf("imap %s: %w", s, err)
	}
	if err := w.imapGreeting(); err != nil {
		w.Close()
		return nil, fmt.Errorf("imap %s: %w", s, err)
	}
	cmd := "LOGIN " + benchLogin + " " + quoteIMAP(benchPassword)
	if s == direct {
		cmd = "AUTHENTICATE XOAUTH2 " + xoauth2.Encode(benchIdentity, e.token)
	}
	if _, err := w.imapCmd(cmd, nil); err != nil {
		w.Close()
		return nil, fmt.Errorf("imap %s login: %w", s, err)
	}
	return w, nil
}

// pop3Session returns a POP3 connection in the transaction state.
func (e *env) pop3Session(ctx context.Context, s side) (*wireConn, error) {
	addr, tlsConf := e.pop3, e.upTLS
	if s == direct {
		addr = e.upPOP3
	} else {
		tlsConf = nil
	}
	w, err := dialWire(ctx, addr, tlsConf)
	if err != nil {
		return nil, fmt.Errorf("pop3 %s: %w", s, err)
	}
	steps := []struct {
		cmd  string
		cont bool
	}{{"USER " + benchLogin, false}, {"PASS " + benchPassword, false}}
	if s == direct {
		steps = []struct {
			cmd  string
			cont bool
		}{{"AUTH XOAUTH2", true}, {xoauth2.Encode(benchIdentity, e.token), false}}
	}
	err = w.pop3Status(false)
	for _, st := range steps {
		if err != nil {
			break
		}
		err = w.pop3Cmd(st.cmd, st.cont)
	}
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("pop3 %s login: %w", s, err)
	}
	return w, nil
}

// smtpSession returns an SMTP connection that is authenticated.
func (e *env) smtpSession(ctx context.Context, s side) (*wireConn, error) {
	addr := e.smtp
	if s == direct {
		addr = e.upSMTP
	}
	w, err := dialWire(ctx, addr, nil)
	if err != nil {
		return nil, fmt.Errorf("smtp %s: %w", s, err)
	}
	if err := e.smtpLogin(ctx, w, s); err != nil {
		w.Close()
		return nil, fmt.Errorf("smtp %s login: %w", s, err)
	}
	return w, nil
}

// smtpLogin runs greeting, EHLO, (STARTTLS, EHLO,) AUTH.
func (e *env) smtpLogin(ctx context.Context, w *wireConn, s side) error {
	if err := w.smtpReply("220"); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if err := w.smtpCmd("EHLO "+smtpHello, "250"); err != nil {
		return err
	}
	if s == through {
		plain := base64.StdEncoding.EncodeToString([]byte("\x00" + benchLogin + "\x00" + benchPassword))
		return w.smtpCmd("AUTH PLAIN "+plain, "235")
	}
	if err := w.smtpCmd("STARTTLS", "220"); err != nil {
		return err
	}
	if err := w.upgradeTLS(ctx, e.upTLS); err != nil {
		return err
	}
	if err := w.smtpCmd("EHLO "+smtpHello, "250"); err != nil {
		return err
	}
	if err := w.smtpCmd("AUTH XOAUTH2", "334"); err != nil {
		return err
	}
	return w.smtpCmd(xoauth2.Encode(benchIdentity, e.token), "235")
}

// closeAll closes every non-nil connection.
func closeAll(ws []*wireConn) {
	for _, w := range ws {
		if w != nil {
			w.Close()
		}
	}
}
