package imapfront

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/xoauthd/xoauthd/internal/diagnose"
	"github.com/xoauthd/xoauthd/internal/memupstream"
	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/proxy"
	"github.com/xoauthd/xoauthd/tokens"
)

// Tokens the in-memory upstream accepts.
var goodTokens = map[string]bool{"good": true, "fresh": true}

// env is a front whose gateway logs in to an in-memory upstream.
type env struct {
	f        *front
	mem      *memupstream.Server
	gateway  *proxy.Gateway
	auth     *fakeAuth
	tok      *fakeTokens
	attempts atomic.Int32 // XOAUTH2 attempts the upstream saw
}

func newEnv(t *testing.T, tok *fakeTokens) *env {
	t.Helper()
	return newEnvWith(t, tok, nil)
}

// newEnvWith is newEnv with the front's options changed by opts (nil: none).
func newEnvWith(t *testing.T, tok *fakeTokens, opts func(*Options)) *env {
	t.Helper()
	e := &env{auth: &fakeAuth{}, tok: tok}
	e.mem = memupstream.MustStart(t, memupstream.Options{Validate: func(user, token string) error {
		e.attempts.Add(1)
		if user != testMailbox || !goodTokens[token] {
			return errors.New("bad token")
		}
		return nil
	}})
	e.mem.AddUser(testMailbox)
	d, err := proxy.NewDialer(e.mem.Addr(), proxy.TLSImplicit, e.mem.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	gw := &proxy.Gateway{Auth: e.auth, Tokens: tok, Upstream: func(proxy.Account) (*proxy.Dialer, error) { return d, nil }, Explain: explain}
	e.gateway = gw
	o := Options{Gateway: gw}
	if opts != nil {
		opts(&o)
	}
	e.f = startFront(t, o)
	return e
}

func TestLoginRelay(t *testing.T) {
	e := newEnv(t, &fakeTokens{token: "good"})
	c := e.f.dial()
	c.send("a LOGIN alice secret\r\n")
	ok := c.until("a ")
	if !strings.HasPrefix(ok, "a OK [CAPABILITY IMAP4rev1 ") || !strings.Contains(ok, " IDLE") || !strings.HasSuffix(ok, "] Logged in") {
		t.Fatalf("login reply %q, want OK with the upstream's capabilities", ok)
	}
	if strings.Contains(ok, "AUTH=PLAIN") {
		t.Errorf("login reply %q has the pre-auth capabilities", ok)
	}
	c.send("b SELECT INBOX\r\n")
	c.until("b OK [READ-WRITE]")
	c.send("c LOGOUT\r\n")
	c.until("c OK ")
	c.expectClosed()
	logs := e.f.logs.String()
	if !strings.Contains(logs, "result=success") || !strings.Contains(logs, "identity="+testIdentity) {
		t.Errorf("no audit line for the login:\n%s", logs)
	}
	if strings.Contains(logs, testPassword) || strings.Contains(logs, "good") {
		t.Errorf("a secret reached the log:\n%s", logs)
	}
}

// TestLoginPipelined sends LOGIN and SELECT in one write: the SELECT waits
// in the front's reader and reaches the upstream after the login's OK.
func TestLoginPipelined(t *testing.T) {
	for _, login := range []string{
		"a LOGIN alice secret\r\n",
		"a AUTHENTICATE PLAIN " + b64("\x00alice\x00secret") + "\r\n",
		"a LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n",
	} {
		t.Run(strings.Fields(login)[1], func(t *testing.T) {
			e := newEnv(t, &fakeTokens{token: "good"})
			c := e.f.dial()
			c.send(login + "b SELECT INBOX\r\nc NOOP\r\n")
			c.expect("a OK [CAPABILITY IMAP4rev1 ...")
			c.until("b OK [READ-WRITE]")
			c.until("c OK ")
		})
	}
}

func TestLoginFailures(t *testing.T) {
	const (
		unavailable = "a " + replyUnavailable
		refused     = "a NO [CONTACTADMIN] The mail provider refused the login for this account; contact the administrator."
	)
	tests := []struct {
		name      string
		tok       *fakeTokens
		fault     memupstream.Fault
		faults    int
		authErr   error
		password  string
		want      string // the login's reply
		refreshes int32
		attempts  int32  // XOAUTH2 attempts upstream
		log       string // must be in the log
	}{
		{name: "rejected once, good after refresh", tok: &fakeTokens{token: "stale", refreshed: "fresh"},
			want: "a OK [CAPABILITY ...", refreshes: 1, attempts: 2, log: "result=success"},
		{name: "rejected twice", tok: &fakeTokens{token: "stale", refreshed: "stale2"},
			want: refused, refreshes: 1, attempts: 2, log: `why="The IMAP server refused the token of alice@example.com`},
		{name: "bad local password", tok: &fakeTokens{token: "good"}, password: "nope",
			want: authFailed, log: "bad local credentials"},
		{name: "throttled", tok: &fakeTokens{token: "good"}, authErr: fmt.Errorf("checking: %w", proxy.ErrThrottled),
			want: "a NO [UNAVAILABLE] Too many failed logins, try again later.", log: "throttled"},
		{name: "needs login", tok: &fakeTokens{tokenErr: classified(proxy.ErrSignInNeeded, &tokens.NeedsLoginError{Identity: testIdentity,
			Meaning: "refresh token expired", Fix: `run "xoauthd login alice@example.com"`})},
			want: "a NO [CONTACTADMIN] The mail provider sign-in for this account has ended; the administrator must sign in again.",
			log:  `why="Refresh token expired. Run \"xoauthd login alice@example.com\"."`},
		{name: "configuration", tok: &fakeTokens{tokenErr: classified(proxy.ErrProviderConfig, &tokens.ConfigError{Identity: testIdentity,
			Meaning: "app registration disabled", Fix: "enable the app registration"})},
			want: "a NO [CONTACTADMIN] The mail provider refused this account's configuration; contact the administrator.",
			log:  `why="App registration disabled. Enable the app registration."`},
		{name: "identity provider down", tok: &fakeTokens{tokenErr: classified(proxy.ErrProviderUnavailable, &tokens.TemporaryError{Identity: testIdentity, Meaning: "no answer"})},
			want: unavailable, log: `why="No answer. Nothing to fix`},
		{name: "refresh fails temporarily", tok: &fakeTokens{token: "stale", refreshErr: &tokens.TemporaryError{Meaning: "no answer"}},
			want: unavailable, refreshes: 1, attempts: 1},
		{name: "authenticated but not connected", tok: &fakeTokens{token: "good"},
			fault: memupstream.FaultNotConnected, faults: -1, want: refused, attempts: 1,
			log: `why="The login worked, but Exchange cannot open the mailbox alice@example.com (IMAP BAD User is authenticated but not connected)`},
		{name: "token expired bye, good after refresh", tok: &fakeTokens{token: "good", refreshed: "fresh"},
			fault: memupstream.FaultTokenExpired, faults: 1, want: "a OK [CAPABILITY ...", refreshes: 1, attempts: 1},
		{name: "closed at login", tok: &fakeTokens{token: "good"},
			fault: memupstream.FaultCloseOnLogin, faults: -1, want: unavailable},
		{name: "closed after login", tok: &fakeTokens{token: "good"},
			fault: memupstream.FaultCloseAfterLogin, faults: -1, want: unavailable, attempts: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.tok)
			e.auth.err = tt.authErr
			if tt.fault != memupstream.FaultNone {
				e.mem.SetFault(testMailbox, tt.fault, tt.faults)
			}
			password := testPassword
			if tt.password != "" {
				password = tt.password
			}
			c := e.f.dial()
			c.send("a LOGIN alice " + password + "\r\n")
			c.expect(tt.want)
			if !strings.HasPrefix(tt.want, "a OK") {
				c.send("b NOOP\r\n")
				c.expect("b OK NOOP completed")
			}
			if n := tt.tok.refresh.Load(); n != tt.refreshes {
				t.Errorf("%d refreshes, want %d", n, tt.refreshes)
			}
			if n := e.attempts.Load(); n != tt.attempts {
				t.Errorf("%d upstream XOAUTH2 attempts, want %d", n, tt.attempts)
			}
			logs := e.f.logs.String()
			if !strings.Contains(logs, tt.log) {
				t.Errorf("log lacks %q:\n%s", tt.log, logs)
			}
			if strings.Contains(logs, testPassword) {
				t.Errorf("the password reached the log:\n%s", logs)
			}
		})
	}
}

func TestUpstreamDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	d, err := proxy.NewDialer(addr, proxy.TLSImplicit, "")
	if err != nil {
		t.Fatal(err)
	}
	d.DialTimeout = time.Second
	gw := &proxy.Gateway{Auth: &fakeAuth{}, Tokens: &fakeTokens{token: "good"},
		Upstream: func(proxy.Account) (*proxy.Dialer, error) { return d, nil }}
	f := startFront(t, Options{Gateway: gw})
	c := f.dial()
	c.send("a LOGIN alice secret\r\n")
	c.expect("a " + replyUnavailable)
	if logs := f.logs.String(); !strings.Contains(logs, "result=error") {
		t.Errorf("no error audit line:\n%s", logs)
	}
}

// TestIMAPClient runs go-imap's client through the front: login, select, a
// 10 MiB fetch byte for byte, and IDLE seeing a message arrive.
func TestIMAPClient(t *testing.T) {
	for _, mech := range []string{"LOGIN", "AUTHENTICATE PLAIN"} {
		t.Run(mech, func(t *testing.T) {
			e := newEnv(t, &fakeTokens{token: "good"})
			size := 10 << 20
			if mech != "LOGIN" {
				size = 64 << 10 // one big fetch is enough
			}
			msg := testkit.BigMessage(size)
			if err := e.mem.Append(testMailbox, "INBOX", msg); err != nil {
				t.Fatal(err)
			}
			watch, exists := testkit.ExistsWatcher()
			c, err := imapclient.DialInsecure(e.f.addr, &imapclient.Options{UnilateralDataHandler: watch})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if mech == "LOGIN" {
				err = c.Login(testLogin, testPassword).Wait()
			} else {
				err = c.Authenticate(sasl.NewPlainClient("", testLogin, testPassword))
			}
			if err != nil {
				t.Fatalf("logging in: %v", err)
			}
			if !c.Caps().Has(imap.CapIdle) {
				t.Errorf("capabilities after login %v lack IDLE", c.Caps())
			}
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				t.Fatal(err)
			}
			section := &imap.FetchItemBodySection{Peek: true}
			msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{section}}).Collect()
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != 1 || !bytes.Equal(msgs[0].FindBodySection(section), msg) {
				t.Fatalf("the fetched message differs from the %d bytes stored", len(msg))
			}

			testkit.IdleSeesExists(t, c, exists, 2, ioTimeout, func() error {
				return e.mem.Append(testMailbox, "INBOX", []byte("Subject: new\r\n\r\nnew\r\n"))
			})
			if err := c.Logout().Wait(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestUpstreamLeftover has a scripted upstream send untagged data in the
// same write as its last reply: the client gets it right after its OK.
func TestUpstreamLeftover(t *testing.T) {
	mem := memupstream.MustStart(t, memupstream.Options{})
	addr := testkit.ServeOne(t, func(raw net.Conn) {
		c := tls.Server(raw, mem.ServerTLS())
		_ = c.SetDeadline(time.Now().Add(ioTimeout))
		br := bufio.NewReader(c)
		io.WriteString(c, greetIR)
		br.ReadString('\n') // AUTHENTICATE
		io.WriteString(c, "a OK [CAPABILITY IMAP4rev1 IDLE] ok\r\n")
		br.ReadString('\n') // LIST
		io.WriteString(c, "* LIST () \"/\" \"\"\r\nxo1 OK done\r\n* 7 EXISTS\r\n* 1 RECENT\r\n")
		line, _ := br.ReadString('\n')
		io.WriteString(c, "* echo "+line)
	})
	d, err := proxy.NewDialer(addr, proxy.TLSImplicit, mem.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	gw := &proxy.Gateway{Auth: &fakeAuth{}, Tokens: &fakeTokens{token: "good"},
		Upstream: func(proxy.Account) (*proxy.Dialer, error) { return d, nil }}
	f := startFront(t, Options{Gateway: gw})
	c := f.dial()
	c.send("a LOGIN alice secret\r\nb NOOP\r\n")
	c.expect("a OK [CAPABILITY IMAP4rev1 IDLE] Logged in", "* 7 EXISTS", "* 1 RECENT", "* echo b NOOP")
}

// classified wraps a token error in the proxy's sentinel for its class, as
// the daemon's token adapter does.
func classified(kind, err error) error { return fmt.Errorf("%w: %w", kind, err) }

// explain is the daemon's proxy.Explainer: package diagnose's words.
func explain(err error, acct proxy.Account) (string, bool) {
	return diagnose.Why(err, diagnose.Account{Identity: acct.Identity, Mailbox: acct.Mailbox})
}
