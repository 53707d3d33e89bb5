//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/passhash"
	"github.com/xoauthd/xoauthd/internal/testidp"
	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/internal/testline"
	"github.com/xoauthd/xoauthd/internal/testsignin"
	"github.com/xoauthd/xoauthd/internal/testupstream"
	"github.com/xoauthd/xoauthd/tokens"
)

// helperServeEnv carries the arguments (one per line) of the xoauthd
// process that TestHelperServe runs.
const helperServeEnv = "XOAUTHD_TEST_SERVE_ARGS"

// The stop tests' accounts.
const (
	stopAlice    = "alice@contoso.test"
	stopBob      = "bob@contoso.test"
	stopLogin    = "erp-alice"
	stopPassword = "local password"
	stopClientID = "5c1e7a3d-2b4f-4e6a-8d9c-0f1e2d3c4b5a"
)

// TestHelperServe is not a test of its own: the stop tests run the test
// binary with helperServeEnv set, and it then is xoauthd, with its real
// main, signals and exit status.
func TestHelperServe(t *testing.T) {
	args := os.Getenv(helperServeEnv)
	if args == "" {
		t.Skip("runs only as the xoauthd process of the stop tests")
	}
	os.Args = append([]string{"xoauthd"}, strings.Split(args, "\n")...)
	main()
}

// stopRig is Dovecot, the test identity provider and a configuration with
// an IMAP, a POP3 and an SMTP listener, alice signed in and two messages in
// her mailbox.
type stopRig struct {
	idp              *testidp.IdP
	dc               *testupstream.Dovecot
	path             string // the configuration file
	imap, pop3, smtp string
}

func newStopRig(t *testing.T) *stopRig {
	t.Helper()
	idp, dc := newServeIdPAndUpstream(t)
	dir := t.TempDir()
	r := newServeRig(t, idp, dc, fmt.Sprintf("store:\n  path: %[1]s/tokens.json\n  key: ${file:%[1]s/store.key}\n", dir))
	r.login(t, stopAlice)
	for i := range 2 {
		msg := fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: waiting %d\r\n\r\nhello\r\n", stopBob, stopAlice, i)
		if err := dc.Deliver(stopAlice, []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// newServeIdPAndUpstream starts the test identity provider, with the stop
// tests' client and users, and Dovecot trusting its tokens.
func newServeIdPAndUpstream(t testing.TB) (*testidp.IdP, *testupstream.Dovecot) {
	t.Helper()
	idp := testidp.New(t, testidp.Options{})
	idp.AddClient(testidp.Client{ID: stopClientID, Public: true})
	idp.AddUser(stopAlice)
	idp.AddUser(stopBob)
	return idp, testupstream.New(t, testupstream.Options{JWTKey: idp.SigningKey()})
}

// newServeRig writes a configuration with store (the YAML of the store
// section), an IMAP, a POP3 and an SMTP listener on free ports in front of
// dc, and the account of stopAlice.
func newServeRig(t testing.TB, idp *testidp.IdP, dc *testupstream.Dovecot, store string) *stopRig {
	t.Helper()
	r := &stopRig{idp: idp, dc: dc, imap: freeLoopback(t), pop3: freeLoopback(t), smtp: freeLoopback(t)}
	hash, err := passhash.Hash(stopPassword)
	if err != nil {
		t.Fatal(err)
	}
	conf := testkit.ThreeListeners{
		Store: store, Tenant: idp.Tenant(), ClientID: stopClientID, Authority: idp.Authority(), CAFile: dc.CAFile,
		IMAP: r.imap, IMAPUpstream: dc.IMAPAddr, POP3: r.pop3, POP3Upstream: dc.POP3Addr,
		SMTP: r.smtp, SMTPUpstream: dc.SubmissionAddr,
		Login: stopLogin, PasswordHash: hash, Identity: stopAlice,
	}.YAML()
	r.path = filepath.Join(t.TempDir(), "xoauthd.yaml")
	if err := os.WriteFile(r.path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return r
}

// login signs identity in with the authorization code flow, the test
// identity provider playing the browser, as "xoauthd login" would.
func (r *stopRig) login(t testing.TB, identity string) {
	t.Helper()
	cfg, err := config.Load(r.path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := testsignin.SignIn(ctx, cfg, "test", identity, r.idp.Authorize); err != nil {
		t.Fatal(err)
	}
}

// openStore opens the token store of r's configuration (creating its key
// when missing); the caller closes it.
func (r *stopRig) openStore(t testing.TB) (tokens.Backend, *config.Config) {
	t.Helper()
	return openConfiguredStore(t, r.path)
}

// freeLoopback returns a loopback address whose port was free just now.
func freeLoopback(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// serveProcess is a running "xoauthd serve".
type serveProcess struct {
	t      testing.TB
	cmd    *exec.Cmd
	stderr *testkit.SyncBuffer
	exited chan struct{} // closed when the process has exited
	err    error         // cmd.Wait's result, once exited
}

// serve starts "xoauthd serve --config FILE args..." and waits until it
// serves.
func (r *stopRig) serve(t testing.TB, args ...string) *serveProcess {
	t.Helper()
	argv := append([]string{"serve", "--config", r.path}, args...)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperServe$")
	cmd.Env = append(os.Environ(), helperServeEnv+"="+strings.Join(argv, "\n"))
	p := &serveProcess{t: t, cmd: cmd, stderr: &testkit.SyncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stderr, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("xoauthd output:\n%s", p.stderr.String())
		}
	})
	p.waitLog("xoauthd started")
	return p
}

// waitLog waits (bounded) until the process has logged text.
func (p *serveProcess) waitLog(text string) {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.stderr.String(), text) {
		select {
		case <-p.exited:
			p.t.Fatalf("xoauthd exited (%v) before logging %q", p.err, text)
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("xoauthd did not log %q", text)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// signal sends sig to the process.
func (p *serveProcess) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

// wait waits up to bound for the process to exit and returns its exit
// status and how long that took.
func (p *serveProcess) wait(bound time.Duration) (code int, took time.Duration) {
	p.t.Helper()
	start := time.Now()
	select {
	case <-p.exited:
	case <-time.After(bound):
		p.t.Fatalf("xoauthd still runs %v after the signal", bound)
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0, time.Since(start)
	case errors.As(p.err, &ee) && ee.Exited():
		return ee.ExitCode(), time.Since(start)
	}
	p.t.Fatalf("xoauthd did not exit by itself: %v", p.err)
	return 0, 0
}

// idling logs in over IMAP, selects INBOX and enters IDLE.
func (r *stopRig) idling(t *testing.T) *testline.Conn {
	t.Helper()
	c := testline.Dial(t, r.imap)
	c.Until("* OK")
	c.Send(`a LOGIN ` + stopLogin + ` "` + stopPassword + `"`)
	c.Until("a OK")
	c.Send("b SELECT INBOX")
	c.Until("b OK")
	c.Send("c IDLE")
	c.Until("+ ")
	return c
}

// popLoggedIn logs in over POP3.
func (r *stopRig) popLoggedIn(t *testing.T) *testline.Conn {
	t.Helper()
	c := testline.Dial(t, r.pop3)
	c.Until("+OK")
	c.Send("USER " + stopLogin)
	c.Until("+OK")
	c.Send("PASS " + stopPassword)
	c.Until("+OK")
	return c
}

// popDeleted logs in over POP3 and marks the first message deleted,
// without QUIT.
func (r *stopRig) popDeleted(t *testing.T) *testline.Conn {
	t.Helper()
	c := r.popLoggedIn(t)
	c.Send("DELE 1")
	c.Until("+OK")
	return c
}

// sending is an SMTP transaction whose message is half sent.
type sending struct {
	c    *smtp.Client
	w    io.WriteCloser
	msg  []byte
	half int
}

// startSending logs in over SMTP and sends half of a message of about
// size bytes with a subject unique to the test.
func (r *stopRig) startSending(t *testing.T, subject string, size int) *sending {
	t.Helper()
	c, err := smtp.Dial(r.smtp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Auth(sasl.NewPlainClient("", stopLogin, stopPassword)); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(stopAlice, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(stopBob, nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n\r\n", stopAlice, stopBob, subject)
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "%08d %s\r\n", i, strings.Repeat("x", 66))
	}
	s := &sending{c: c, w: w, msg: b.Bytes(), half: b.Len() / 2}
	if _, err := w.Write(s.msg[:s.half]); err != nil {
		t.Fatal(err)
	}
	return s
}

// finish sends the rest of the message and returns the reply's error (nil:
// 250).
func (s *sending) finish() error {
	if _, err := s.w.Write(s.msg[s.half:]); err != nil {
		return err
	}
	return s.w.Close()
}

// delivered reports whether the sink has the message whole.
func (r *stopRig) delivered(s *sending) bool {
	body := s.msg[bytes.Index(s.msg, []byte("\r\n\r\n"))+4:]
	subject := s.msg[:bytes.Index(s.msg, []byte("\r\n\r\n"))]
	subject = subject[bytes.Index(subject, []byte("Subject: ")):]
	for _, m := range r.dc.Sink.Messages() {
		if bytes.Contains(m.Data, subject) && bytes.Contains(m.Data, body) {
			return true
		}
	}
	return false
}

// TestServeStop runs xoauthd as a process and stops it with signals.
func TestServeStop(t *testing.T) {
	t.Parallel()
	r := newStopRig(t)

	// IMAP in IDLE, POP3 with a message marked deleted and an SMTP message
	// half sent when SIGTERM comes: IMAP gets BYE and POP3 -ERR at once,
	// while the message goes on; it is delivered with its 250, and xoauthd
	// exits 0 then, not at the end of the drain time. The POP3 deletion
	// was never committed.
	t.Run("IMAP and POP3 end at once, SMTP finishes", func(t *testing.T) {
		const drain = 30 * time.Second
		p := r.serve(t, "--drain", drain.String())
		imap := r.idling(t)
		pop := r.popDeleted(t)
		send := r.startSending(t, "stop while sending", 2<<20)

		p.signal(syscall.SIGTERM)
		signalled := time.Now()
		if got := imap.Until("* "); got != "* BYE Server shutting down\r\n" {
			t.Errorf("IMAP in IDLE got %q, want * BYE", got)
		}
		if rest := imap.Rest(); rest != "" {
			t.Errorf("IMAP got %q after the BYE", rest)
		}
		if got := pop.Rest(); got != "-ERR [SYS/TEMP] Server shutting down, try again later.\r\n" {
			t.Errorf("POP3 got %q, want -ERR and the end", got)
		}
		err := send.finish()
		delivered := r.delivered(send)
		switch {
		case err == nil && !delivered:
			t.Fatal("the message was answered 250 but the upstream does not have it")
		case err != nil:
			t.Errorf("the message under way at SIGTERM was not accepted: %v (delivered: %v)", err, delivered)
		}
		code, _ := p.wait(drain)
		if code != exitOK {
			t.Errorf("exit status %d, want 0", code)
		}
		t.Logf("xoauthd exited %v after SIGTERM (drain %v)", time.Since(signalled).Round(time.Millisecond), drain)
		if strings.Contains(p.stderr.String(), "sessions closed at the end of the drain time") {
			t.Error("xoauthd waited for the drain time")
		}
		// The next run finds both messages: the DELE was not committed.
		p = r.serve(t)
		pop = r.popLoggedIn(t)
		pop.Send("STAT")
		if got := pop.Until("+OK"); !strings.HasPrefix(got, "+OK 2 ") {
			t.Errorf("after the stop, STAT says %q; want both messages still there", got)
		}
		p.signal(syscall.SIGTERM)
		if code, _ := p.wait(time.Minute); code != exitOK {
			t.Errorf("the second run exited %d", code)
		}
	})

	// A message stalled when the drain time is up is cut, never answered
	// 250, and xoauthd exits 0 right after the drain time.
	t.Run("drain time up", func(t *testing.T) {
		p := r.serve(t, "--drain", "2s")
		send := r.startSending(t, "stalled at the drain", 256<<10)
		p.signal(syscall.SIGTERM)
		code, took := p.wait(10 * time.Second)
		if code != exitOK {
			t.Errorf("exit status %d, want 0", code)
		}
		t.Logf("xoauthd exited %v after SIGTERM with --drain 2s", took.Round(time.Millisecond))
		if err := send.finish(); err == nil || r.delivered(send) {
			t.Errorf("a message cut by the end of the drain: reply %v, delivered %v; want neither", err, r.delivered(send))
		}
	})

	// A second SIGTERM exits at once, long before the drain time, with
	// status 1; the stalled message is not answered 250.
	t.Run("second signal", func(t *testing.T) {
		p := r.serve(t, "--drain", "5m")
		send := r.startSending(t, "stalled at the second signal", 256<<10)
		p.signal(syscall.SIGTERM)
		p.waitLog("stopping")
		p.signal(syscall.SIGTERM)
		code, took := p.wait(time.Minute)
		if code != exitFailure {
			t.Errorf("exit status %d, want %d", code, exitFailure)
		}
		t.Logf("xoauthd exited %v after the second SIGTERM", took.Round(time.Millisecond))
		if !strings.Contains(p.stderr.String(), "second signal") {
			t.Error("xoauthd did not say why it exited at once")
		}
		if err := send.finish(); err == nil || r.delivered(send) {
			t.Errorf("a message cut by the second signal: reply %v, delivered %v; want neither", err, r.delivered(send))
		}
	})
}
