package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"net"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/imapfront"
	"github.com/xoauthd/xoauthd/pop3front"
	"github.com/xoauthd/xoauthd/proxy"
	"github.com/xoauthd/xoauthd/smtpfront"
)

// side says how the benchmark reaches the upstream.
type side int

const (
	direct  side = iota // straight to the upstream, logged in with xoauthd's own upstream login
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

// benchAccount is the benchmark's account as the fronts' upstream logins
// take it.
var benchAccount = proxy.Account{Login: benchLogin, Identity: benchIdentity, Mailbox: benchIdentity}

// imapSession returns an IMAP connection that is logged in.
func (e *env) imapSession(ctx context.Context, s side) (*wireConn, error) {
	return e.imapSessionSized(ctx, s, readBufSize)
}

// imapSessionSized is imapSession with a read buffer of bufSize bytes.
// Direct, it logs in with the login xoauthd runs upstream.
func (e *env) imapSessionSized(ctx context.Context, s side, bufSize int) (*wireConn, error) {
	if s == direct {
		return e.directSession(ctx, config.ProtoIMAP, bufSize, func(conn net.Conn, d *proxy.Dialer) (net.Conn, *bufio.Reader, error) {
			up, err := imapfront.LoginUpstream(ctx, conn, d, benchAccount, e.token, imapfront.LoginOptions{Tag: "b0"})
			if err != nil {
				return nil, nil, err
			}
			return up.Conn, up.Reader, nil
		})
	}
	w, err := dialWireSized(ctx, e.imap, bufSize)
	if err != nil {
		return nil, fmt.Errorf("imap %s: %w", s, err)
	}
	if err := w.imapGreeting(); err != nil {
		w.Close()
		return nil, fmt.Errorf("imap %s: %w", s, err)
	}
	if _, err := w.imapCmd("LOGIN "+benchLogin+" "+quoteIMAP(benchPassword), nil); err != nil {
		w.Close()
		return nil, fmt.Errorf("imap %s login: %w", s, err)
	}
	return w, nil
}

// pop3Session returns a POP3 connection in the transaction state. Direct,
// it logs in with the login xoauthd runs upstream.
func (e *env) pop3Session(ctx context.Context, s side) (*wireConn, error) {
	if s == direct {
		return e.directSession(ctx, config.ProtoPOP3, readBufSize, func(conn net.Conn, d *proxy.Dialer) (net.Conn, *bufio.Reader, error) {
			up, err := pop3front.LoginUpstream(ctx, conn, d, benchAccount, e.token, pop3front.LoginOptions{})
			if err != nil {
				return nil, nil, err
			}
			return up.Conn, up.Reader, nil
		})
	}
	w, err := dialWire(ctx, e.pop3)
	if err != nil {
		return nil, fmt.Errorf("pop3 %s: %w", s, err)
	}
	err = w.pop3Status(false)
	for _, cmd := range []string{"USER " + benchLogin, "PASS " + benchPassword} {
		if err != nil {
			break
		}
		err = w.pop3Cmd(cmd, false)
	}
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("pop3 %s login: %w", s, err)
	}
	return w, nil
}

// smtpSession returns an SMTP connection that is authenticated. Direct, it
// logs in with the login xoauthd runs upstream and then speaks SMTP on the
// connection itself.
func (e *env) smtpSession(ctx context.Context, s side) (*wireConn, error) {
	if s == direct {
		return e.directSession(ctx, config.ProtoSMTP, readBufSize, func(conn net.Conn, d *proxy.Dialer) (net.Conn, *bufio.Reader, error) {
			up, err := smtpfront.LoginUpstream(ctx, conn, d, benchAccount, e.token, smtpfront.LoginOptions{Domain: smtpHello})
			if err != nil {
				return nil, nil, err
			}
			// Nothing follows the 235 that go-smtp's client could have read.
			return up.Conn, nil, nil
		})
	}
	w, err := dialWire(ctx, e.smtp)
	if err != nil {
		return nil, fmt.Errorf("smtp %s: %w", s, err)
	}
	if err := e.smtpLogin(w); err != nil {
		w.Close()
		return nil, fmt.Errorf("smtp %s login: %w", s, err)
	}
	return w, nil
}

// directSession dials the upstream of proto and runs login, a front's
// upstream login, on the connection. login returns the logged-in
// connection and the login's reader (nil: none), which is kept in front of
// the session's own read buffer of bufSize bytes when it still holds data.
func (e *env) directSession(ctx context.Context, proto string, bufSize int,
	login func(conn net.Conn, d *proxy.Dialer) (net.Conn, *bufio.Reader, error)) (*wireConn, error) {
	d := e.upDialers[proto]
	conn, err := d.Dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", proto, direct, err)
	}
	conn, br, err := login(conn, d)
	if err != nil {
		return nil, fmt.Errorf("%s %s login: %w", proto, direct, err)
	}
	if br != nil && br.Buffered() > 0 {
		return &wireConn{c: conn, r: bufio.NewReaderSize(br, bufSize)}, nil
	}
	return &wireConn{c: conn, r: bufio.NewReaderSize(conn, bufSize)}, nil
}

// smtpLogin runs greeting, EHLO and AUTH PLAIN with the local password.
func (e *env) smtpLogin(w *wireConn) error {
	if err := w.smtpReply("220"); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if err := w.smtpCmd("EHLO "+smtpHello, "250"); err != nil {
		return err
	}
	plain := base64.StdEncoding.EncodeToString([]byte("\x00" + benchLogin + "\x00" + benchPassword))
	return w.smtpCmd("AUTH PLAIN "+plain, "235")
}

// closeAll closes every non-nil connection.
func closeAll(ws []*wireConn) {
	for _, w := range ws {
		if w != nil {
			w.Close()
		}
	}
}
