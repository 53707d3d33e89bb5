package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/testkit"
)

// ioTimeout bounds every network step of a test.
const ioTimeout = 20 * time.Second

// sentMessage is what the tests send; its dotted lines need dot-stuffing on
// SMTP and POP3 and must come back unchanged.
const sentMessage = "From: demo@contoso.test\r\nTo: demo@contoso.test\r\nSubject: Sent through the demo\r\n\r\n" +
	"Hello.\r\n.a line with a leading dot\r\n..\r\nBye.\r\n"

// startEnv starts a demo on free loopback ports and stops it at the end of
// the test, checking that its directory is removed.
func startEnv(t *testing.T, opts Options) (*Env, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	opts.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.OnPanic = func(v any) { t.Errorf("recovered panic: %v", v) }
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	e, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("Start: %v\nlog:\n%s", err, logs.String())
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), ioTimeout)
		defer scancel()
		if err := e.Close(sctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		if _, err := os.Stat(e.Dir()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("demo directory %s left after Close: %v", e.Dir(), err)
		}
		if t.Failed() {
			t.Logf("log:\n%s", logs.String())
		}
	})
	return e, logs
}

func TestSendFetchRetrieve(t *testing.T) {
	e, _ := startEnv(t, Options{})

	sendSMTP(t, e.Addr(config.ProtoSMTP), Identity)

	c, err := imapclient.DialInsecure(e.Addr(config.ProtoIMAP), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(Login, Password).Wait(); err != nil {
		t.Fatalf("IMAP LOGIN through the demo: %v", err)
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages != 2 {
		t.Fatalf("INBOX has %d messages, want the welcome message and the sent one", sel.NumMessages)
	}
	section := &imap.FetchItemBodySection{}
	bufs, err := c.Fetch(imap.UIDSetNum(1, 2), &imap.FetchOptions{UID: true,
		BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	if err != nil || len(bufs) != 2 {
		t.Fatalf("FETCH: %d messages, %v", len(bufs), err)
	}
	if got := string(bufs[0].FindBodySection(section)); !strings.Contains(got, "Subject: Welcome to the xoauthd demo\r\n") {
		t.Errorf("UID 1 = %q, want the welcome message", got)
	}
	if got := string(bufs[1].FindBodySection(section)); !strings.HasSuffix(got, sentMessage) {
		t.Errorf("UID 2 = %q, want it to end with the sent message", got)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Error(err)
	}

	got := retrPOP3(t, e.Addr(config.ProtoPOP3), 2)
	if want := strings.ReplaceAll(sentMessage, "\r\n", "\n"); !strings.HasSuffix(got, want) {
		t.Errorf("POP3 RETR 2 = %q, want it to end with %q", got, want)
	}
}

// sendSMTP sends sentMessage to rcpt through the demo's SMTP port with
// go-smtp's client, logging in with AUTH PLAIN.
func sendSMTP(t *testing.T, addr, rcpt string) {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.CommandTimeout, c.SubmissionTimeout = ioTimeout, ioTimeout
	if err := c.Hello("test.example"); err != nil {
		t.Fatal(err)
	}
	// Probed at start: even the first session is offered the upstream's
	// SMTPUTF8.
	if ok, _ := c.Extension("SMTPUTF8"); !ok {
		t.Error("the demo's SMTP port does not offer the upstream's SMTPUTF8")
	}
	if err := c.Auth(sasl.NewPlainClient("", Login, Password)); err != nil {
		t.Fatalf("SMTP AUTH PLAIN through the demo: %v", err)
	}
	if err := c.Mail(Identity, nil); err != nil {
		t.Fatalf("MAIL through the demo: %v", err)
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		t.Fatalf("RCPT through the demo: %v", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatalf("DATA through the demo: %v", err)
	}
	if _, err := io.WriteString(w, sentMessage); err != nil {
		t.Fatal(err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		t.Fatalf("sending through the demo: %v", err)
	}
	// The upstream's own reply, with its queue id, reaches the client.
	if !strings.HasPrefix(resp.StatusText, "2.0.0 Ok: queued as MEM") {
		t.Errorf("reply to the message %q, want the upstream's 2.0.0 Ok: queued as MEM...", resp.StatusText)
	}
	if err := c.Quit(); err != nil {
		t.Error(err)
	}
}

// retrPOP3 logs in with USER/PASS and returns message n, dot-stuffing
// undone and with LF line ends.
func retrPOP3(t *testing.T, addr string, n int) string {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(ioTimeout))
	tp := textproto.NewConn(nc)
	step := func(cmd string) string {
		t.Helper()
		if cmd != "" {
			if err := tp.PrintfLine("%s", cmd); err != nil {
				t.Fatal(err)
			}
		}
		l, err := tp.ReadLine()
		if err != nil || !strings.HasPrefix(l, "+OK") {
			t.Fatalf("POP3 %q: %q, %v", cmd, l, err)
		}
		return l
	}
	step("")
	step("USER " + Login)
	step("PASS " + Password)
	step(fmt.Sprintf("RETR %d", n))
	body, err := tp.ReadDotBytes()
	if err != nil {
		t.Fatal(err)
	}
	step("QUIT")
	return string(body)
}

func TestRefusals(t *testing.T) {
	e, _ := startEnv(t, Options{})

	c, err := imapclient.DialInsecure(e.Addr(config.ProtoIMAP), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Login(Login, "wrong").Wait()
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Code != imap.ResponseCodeAuthenticationFailed {
		t.Errorf("IMAP LOGIN with a wrong password = %v, want NO [AUTHENTICATIONFAILED]", err)
	}

	sc, err := smtp.Dial(e.Addr(config.ProtoSMTP))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	sc.CommandTimeout = ioTimeout
	if err := sc.Auth(sasl.NewPlainClient("", Login, Password)); err != nil {
		t.Fatal(err)
	}
	if err := sc.Mail(Identity, nil); err != nil {
		t.Fatal(err)
	}
	// The mail server's refusal reaches the client unchanged.
	err = sc.Rcpt("someone@elsewhere.example", nil)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) {
		t.Errorf("RCPT to an unknown address = %v, want 550 5.1.1", err)
	}
}

// portRE finds the addresses in the instructions' table.
var portRE = regexp.MustCompile(`(?m)^  (IMAP|POP3|SMTP) +(\S+) `)

func TestInstructionsNameTheActualPorts(t *testing.T) {
	e, _ := startEnv(t, Options{})
	var b strings.Builder
	if err := e.WriteInstructions(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	imapAddr, pop3Addr, smtpAddr := e.Addr(config.ProtoIMAP), e.Addr(config.ProtoPOP3), e.Addr(config.ProtoSMTP)
	for _, want := range []string{
		"curl imap://" + imapAddr + "/ -u demo:demo\n",
		`curl "imap://` + imapAddr + `/INBOX?ALL" -u demo:demo` + "\n",
		`curl "imap://` + imapAddr + `/INBOX;UID=1" -u demo:demo` + "\n",
		"curl pop3://" + pop3Addr + "/1 -u demo:demo\n",
		"curl smtp://" + smtpAddr + " --mail-from demo@contoso.test --mail-rcpt demo@contoso.test -u demo:demo -T message.txt\n",
		"  user name  demo\n", "  password   demo\n",
		e.ConfigPath(), "What Microsoft 365 needs instead", "Ctrl-C",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("instructions lack %q:\n%s", want, out)
		}
	}
	got := map[string]string{}
	for _, m := range portRE.FindAllStringSubmatch(out, -1) {
		got[m[1]] = m[2]
	}
	if got["IMAP"] != imapAddr || got["POP3"] != pop3Addr || got["SMTP"] != smtpAddr {
		t.Errorf("address table %v, want %s %s %s", got, imapAddr, pop3Addr, smtpAddr)
	}
	if strings.Contains(out, "is in use") || strings.Contains(out, "Warning") {
		t.Errorf("instructions warn about nothing that happened:\n%s", out)
	}
	for i, line := range strings.Split(out, "\n") {
		if len(line) > 80 && !strings.Contains(line, "curl ") && !strings.Contains(line, "printf ") &&
			!strings.Contains(line, e.ConfigPath()) {
			t.Errorf("line %d is %d columns wide: %q", i+1, len(line), line)
		}
	}
}

func TestTakenPortIsReplaced(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.Addr().(*net.TCPAddr).Port
	e, _ := startEnv(t, Options{IMAPPort: port})
	ls := e.Listeners()
	if !ls[0].Moved() || ls[0].Wanted != port || ls[0].Addr == busy.Addr().String() {
		t.Fatalf("IMAP listener %+v, want it moved off the busy port %d", ls[0], port)
	}
	if ls[1].Moved() || ls[2].Moved() {
		t.Errorf("listeners %+v moved, but only IMAP's port was taken", ls)
	}
	var b strings.Builder
	if err := e.WriteInstructions(&b); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("Port %d is in use, so IMAP listens on %s instead.", port, ls[0].Addr); !strings.Contains(b.String(), want) {
		t.Errorf("instructions lack %q:\n%s", want, b.String())
	}
}

func TestWantedFreePortIsUsed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	e, _ := startEnv(t, Options{SMTPPort: port})
	if got := e.Addr(config.ProtoSMTP); got != fmt.Sprintf("127.0.0.1:%d", port) {
		// Another process may have taken the port in between: then it moved.
		if !e.Listeners()[2].Moved() {
			t.Errorf("SMTP listens on %s, want port %d", got, port)
		}
	}
}

func TestBadHost(t *testing.T) {
	for _, host := range []string{"example.com", "127.0.0.1:25", "-x", "a b"} {
		if _, err := Start(context.Background(), Options{Host: host}); err == nil {
			t.Errorf("Start with host %q succeeded", host)
		}
	}
}

func TestStartCancelled(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where Start makes its directory
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Start(ctx, Options{}); err == nil {
		t.Fatal("Start with a cancelled context succeeded")
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("a failed Start left %s in the temporary directory", left[0].Name())
	}
	if err := Run(ctx, Options{}, io.Discard); err != nil {
		t.Errorf("Run with a cancelled context = %v, want nil (a Ctrl-C during setup)", err)
	}
}

// TestRunStopsCleanly runs the demo as the command does, uses a port from
// its output, cancels it and checks that it returns nil and removed its
// files.
func TestRunStopsCleanly(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := Run(ctx, Options{}, pw)
		_ = pw.Close()
		done <- err
	}()
	out := testkit.ReadUntil(t, pr, "Press Ctrl-C", ioTimeout)
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	addrs := map[string]string{}
	for _, m := range portRE.FindAllStringSubmatch(out, -1) {
		addrs[m[1]] = m[2]
	}
	c, err := imapclient.DialInsecure(addrs["IMAP"], nil)
	if err != nil {
		t.Fatalf("dialing the printed IMAP address %q: %v", addrs["IMAP"], err)
	}
	if err := c.Login(Login, Password).Wait(); err != nil {
		t.Errorf("IMAP login at the printed address: %v", err)
	}
	_ = c.Close()
	m := regexp.MustCompile(`The configuration in use is (.+);`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no configuration path in the output:\n%s", out)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(ioTimeout):
		t.Fatal("Run did not return after cancel")
	}
	if _, err := os.Stat(filepath.Dir(m[1])); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("demo directory left after Run returned: %v", err)
	}
	if _, err := net.DialTimeout("tcp", addrs["IMAP"], ioTimeout); err == nil {
		t.Error("the IMAP port still accepts after Run returned")
	}
}

// TestPrintedCommandsWithCurl pastes the printed commands into a shell,
// as a user would, when curl is installed.
func TestPrintedCommandsWithCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh to run the commands")
	}
	e, _ := startEnv(t, Options{})
	var b strings.Builder
	if err := e.WriteInstructions(&b); err != nil {
		t.Fatal(err)
	}
	var cmds []string
	for _, line := range strings.Split(b.String(), "\n") {
		if l := strings.TrimSpace(line); strings.HasPrefix(l, "curl ") || strings.HasPrefix(l, "printf ") {
			cmds = append(cmds, l)
		}
	}
	// What each command prints, in order.
	wants := []string{
		`* LIST () "/" INBOX`,
		"* SEARCH 1",
		"Subject: Welcome to the xoauthd demo",
		"Subject: Welcome to the xoauthd demo",
		"", // printf > message.txt
		"", // the send prints nothing
		"Subject: Hello through xoauthd",
		"Subject: Hello through xoauthd",
	}
	if len(cmds) != len(wants) {
		t.Fatalf("found %d commands in the instructions, want %d: %q", len(cmds), len(wants), cmds)
	}
	dir := t.TempDir()
	for i, cmd := range cmds {
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		run := exec.CommandContext(ctx, sh, "-c", strings.Replace(cmd, "curl ", "curl -sS --max-time 15 ", 1))
		run.Dir = dir
		out, err := run.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, out)
		}
		if !strings.Contains(string(out), wants[i]) {
			t.Errorf("%s printed %q, want %q in it", cmd, out, wants[i])
		}
	}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
