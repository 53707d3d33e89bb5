package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/daemon"
	"github.com/xoauthd/xoauthd/internal/testidp"
	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/proxy"
	"github.com/xoauthd/xoauthd/tokens"
)

// The fault tests break what xoauthd depends on, one thing at a time: the
// identity provider, the upstream (down, bad certificates, connections cut
// mid-greeting, mid-login, mid-transfer, mid-DATA) and the token store. Each
// fault must give the client the protocol's temporary error (or a clean
// close of a relayed session), leave a log line that names the cause and
// what to do, and lose no message and no token.

// Temporary-failure replies of the three fronts.
var temporaryReply = map[string]string{
	"imap": "a NO [UNAVAILABLE]",
	"pop3": "-ERR [SYS/TEMP]",
	"smtp": "454 4.7.0",
}

// successReply are the replies to a good login.
var successReply = map[string]string{"imap": "a OK", "pop3": "+OK", "smtp": "235"}

// attemptLogin logs login in on proto and returns the reply to the login
// (or what ended the connection).
func (r *rig) attemptLogin(proto, login, password string, src net.IP) string {
	addr := map[string]string{"imap": r.imap, "pop3": r.pop3, "smtp": r.smtp}[proto]
	c, err := dialFrom(addr, src)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(90 * time.Second))
	br := bufio.NewReader(c)
	if _, err := br.ReadString('\n'); err != nil {
		return "greeting: " + err.Error()
	}
	if proto == "smtp" {
		io.WriteString(c, "EHLO fault.contoso.test\r\n")
		if err := expectSMTP(br, "250"); err != nil {
			return "EHLO: " + err.Error()
		}
	}
	reply, err := tryPassword(c, br, proto, login, password)
	if err != nil {
		return "login: " + err.Error()
	}
	return reply
}

// expectLogins logs bob in on every protocol and checks each reply's prefix.
func (r *rig) expectLogins(t *testing.T, want map[string]string, src net.IP) {
	t.Helper()
	for _, proto := range []string{"imap", "pop3", "smtp"} {
		if got := r.attemptLogin(proto, bobLogin, bobPass, src); !strings.HasPrefix(got, want[proto]) {
			t.Errorf("%s login: %q, want %q", proto, got, want[proto])
		}
	}
}

// expectLog checks that one log line contains all of parts. A line about a
// session's end may come a moment after the client saw the end, so it
// waits a little for one.
func (r *rig) expectLog(t *testing.T, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(logWait)
	for !r.hasLog(parts...) {
		if time.Now().After(deadline) {
			t.Errorf("no log line contains all of %q", parts)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logWait bounds expectLog's wait for a log line.
const logWait = 5 * time.Second

// hasLog reports whether one log line contains all of parts.
func (r *rig) hasLog(parts ...string) bool {
	for _, line := range strings.Split(r.logs.String(), "\n") {
		ok := true
		for _, p := range parts {
			if !strings.Contains(line, p) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// refreshTimeout bounds one request to the identity provider, and
// refreshBackoff is the first pause after a failed refresh, in the identity
// provider fault test (the daemon's defaults are 30 s and 2 s).
const (
	refreshTimeout = 2 * time.Second
	refreshBackoff = 500 * time.Millisecond
)

func TestFaultIdentityProvider(t *testing.T) {
	t.Parallel()
	// The daemon's token manager, with a short request timeout so that a
	// hanging identity provider costs the test seconds, not minutes.
	withManager := func(r *rig, log *slog.Logger) proxy.TokenSource {
		key, _, err := tokens.LoadKey(r.cfg.Store)
		if err != nil {
			r.t.Fatal(err)
		}
		store, err := tokens.OpenStore(r.cfg.Store.Path, key)
		if err != nil {
			r.t.Fatal(err)
		}
		providers := func(string) (*config.Provider, error) { return r.cfg.Providers["test"], nil }
		return tokens.NewManager(store, providers, tokens.Options{Logger: log, RequestTimeout: refreshTimeout, BackoffMin: refreshBackoff})
	}
	r := newRigWith(t, rigOptions{tokens: withManager})
	faults := []struct {
		name    string
		failure testidp.Failure
		log     []string // a log line contains these
	}{
		{"500", testidp.Failure{Status: 500}, []string{"token refresh failed", "identity=bob@contoso.test", "500"}},
		{"429 with Retry-After", testidp.Failure{Status: 429, RetryAfter: 2 * time.Second}, []string{"token refresh failed", "identity=bob@contoso.test", "retries after"}},
		{"malformed JSON", testidp.Failure{MalformedJSON: true}, []string{"token refresh failed", "identity=bob@contoso.test"}},
		{"hanging", testidp.Failure{Hang: true}, []string{"token refresh failed", "identity=bob@contoso.test"}},
	}
	for i, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			src := sourceAddr(honestNet, 10+i)
			// bob signs in again: a new refresh token (which ends any
			// back-off) and an access token that needs a refresh at once.
			r.idp.SetAccessTokenLifetime(time.Second)
			r.login(bob)
			r.idp.FailWith(f.failure)
			// alice's token is good for an hour: her logins do not wait
			// for bob's refresh, even while the provider hangs.
			done := make(chan string, 1)
			go func() {
				start := time.Now()
				got := r.attemptLogin("imap", aliceLogin, alicePass, sourceAddr(honestNet, 100+i))
				done <- fmt.Sprintf("%s after %v", got, time.Since(start).Round(time.Millisecond))
			}()
			r.expectLogins(t, temporaryReply, src)
			if got := <-done; !strings.HasPrefix(got, "a OK") {
				t.Errorf("alice's login while bob's refresh failed: %s", got)
			}
			r.expectLog(t, f.log...)
			for _, proto := range []string{"imap", "pop3", "smtp"} {
				r.expectLog(t, "msg=login", "proto="+proto, "result=error", "identity=bob@contoso.test")
			}

			// The provider is back: bob's stored refresh token still works
			// once the back-off has passed.
			r.idp.ClearFailure()
			r.idp.SetAccessTokenLifetime(time.Hour)
			deadline := time.Now().Add(30 * time.Second)
			for {
				got := r.attemptLogin("imap", bobLogin, bobPass, src)
				if strings.HasPrefix(got, "a OK") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after the provider recovered: %q", got)
				}
				time.Sleep(250 * time.Millisecond)
			}
			r.expectLogins(t, successReply, src)
		})
	}
}

func TestFaultUpstreamDown(t *testing.T) {
	t.Parallel()
	r := newRigWith(t, rigOptions{})
	before := r.storeDigest()
	if err := r.dc.Stop(); err != nil {
		t.Fatal(err)
	}
	r.expectLogins(t, temporaryReply, sourceAddr(honestNet, 1))
	r.expectLog(t, "result=error", "connection refused", "check the network or the upstream in the config")
	if err := r.dc.Restart(); err != nil {
		t.Fatal(err)
	}
	r.expectLogins(t, successReply, sourceAddr(honestNet, 2))
	if r.storeDigest() != before {
		t.Error("the token store changed while the upstream was down")
	}
}

func TestFaultUpstreamTLS(t *testing.T) {
	t.Parallel()
	r := newRigWith(t, rigOptions{})
	pki, other := testkit.NewPKI(t), testkit.NewPKI(t)
	now := time.Now()
	wrongName := pki.LeafBetween(t, now.Add(-time.Hour), now.Add(time.Hour), "wrong.contoso.test")
	expired := pki.LeafBetween(t, now.Add(-48*time.Hour), now.Add(-24*time.Hour), "127.0.0.1", "localhost")
	cases := []struct {
		name string
		cert *tls.Certificate // served by a test upstream; nil: Dovecot itself
		ca   string
		log  []string
	}{
		{"wrong host name", &wrongName, pki.CAFile, []string{"not valid for that name", "check the upstream host name in the config"}},
		{"expired certificate", &expired, pki.CAFile, []string{"has expired or is not valid yet", "check this machine's clock"}},
		{"unknown CA (Dovecot with another ca_file)", nil, other.CAFile, []string{"is not trusted", "set ca_file for a private CA"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ups := map[string]upstreamConf{
				"imap": {r.dc.IMAPAddr, tc.ca, "implicit"},
				"pop3": {r.dc.POP3Addr, tc.ca, "implicit"},
				"smtp": {r.dc.SubmissionAddr, tc.ca, "starttls"},
			}
			var handshakes []func() int32
			if tc.cert != nil {
				for _, proto := range []string{"imap", "pop3"} {
					addr, n := serveTLS(t, *tc.cert, "* OK must never be read\r\n")
					ups[proto] = upstreamConf{addr, tc.ca, "implicit"}
					handshakes = append(handshakes, n.Load)
				}
				u := newSMTPFaultUpstreamCert(t, *tc.cert)
				ups["smtp"] = upstreamConf{u.addr, tc.ca, "starttls"}
				handshakes = append(handshakes, u.tlsSessions.Load)
			}
			r.reconfigure(rigOptions{upstreams: func(*rig) map[string]upstreamConf { return ups }})
			r.expectLogins(t, temporaryReply, sourceAddr(honestNet, 20+i))
			for _, proto := range []string{"imap", "pop3", "smtp"} {
				r.expectLog(t, append([]string{"proto=" + proto, "result=error"}, tc.log...)...)
			}
			for j, n := range handshakes {
				if n() != 0 {
					t.Errorf("upstream %d: xoauthd completed %d TLS handshakes with a certificate it must refuse", j, n())
				}
			}
		})
	}
	// With the right CA again, everything works: nothing was lost.
	r.reconfigure(rigOptions{})
	r.expectLogins(t, successReply, sourceAddr(honestNet, 30))
}

// newSMTPFaultUpstreamCert is an SMTP upstream offering STARTTLS with cert
// (a certificate xoauthd must refuse); it counts completed TLS sessions.
func newSMTPFaultUpstreamCert(t *testing.T, cert tls.Certificate) *certSMTPUpstream {
	t.Helper()
	u := &certSMTPUpstream{}
	s := smtp.NewServer(smtpBackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		if _, ok := c.TLSConnectionState(); ok {
			u.tlsSessions.Add(1)
		}
		return &faultSession{u: &smtpFaultUpstream{stored: map[string]bool{}}, c: c}, nil
	}))
	s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.addr = ln.Addr().String()
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return u
}

// certSMTPUpstream is the upstream of newSMTPFaultUpstreamCert.
type certSMTPUpstream struct {
	addr        string
	tlsSessions atomic.Int32
}

func TestFaultUpstreamCuts(t *testing.T) {
	t.Parallel()
	pki := testkit.NewPKI(t)
	var imapProxy, popProxy *faultProxy
	r := newRigWith(t, rigOptions{upstreams: func(r *rig) map[string]upstreamConf {
		imapProxy = newFaultProxy(t, pki, r.dc.IMAPAddr, r.dc.TLSConfig())
		popProxy = newFaultProxy(t, pki, r.dc.POP3Addr, r.dc.TLSConfig())
		return map[string]upstreamConf{
			"imap": {imapProxy.addr, pki.CAFile, "implicit"},
			"pop3": {popProxy.addr, pki.CAFile, "implicit"},
		}
	}})
	before := r.storeDigest()
	for _, tc := range []struct {
		name string
		mode cut
		log  string
	}{
		{"mid-greeting", cutGreeting, "result=error"},
		{"mid-login", cutLogin, "result=error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			imapProxy.set(tc.mode, "", 0)
			popProxy.set(tc.mode, "", 0)
			c0, p0 := imapProxy.cuts.Load(), popProxy.cuts.Load()
			for _, proto := range []string{"imap", "pop3"} {
				if got := r.attemptLogin(proto, bobLogin, bobPass, sourceAddr(honestNet, 40)); !strings.HasPrefix(got, temporaryReply[proto]) {
					t.Errorf("%s login with the upstream cut %s: %q, want %q", proto, tc.name, got, temporaryReply[proto])
				}
			}
			if imapProxy.cuts.Load() == c0 || popProxy.cuts.Load() == p0 {
				t.Fatal("the fault proxy cut nothing")
			}
			// The cause, and the fix in why=.
			r.expectLog(t, tc.log, "proto=pop3", "upstream unavailable", "EOF", "why=", "Try again")
			// The IMAP front drops the cause (io.EOF) from the error chain
			// (it formats it with %v), so no why= can be derived: reported,
			// checked here for the cause in the text only.
			r.expectLog(t, tc.log, "proto=imap", "upstream unavailable", "EOF")
		})
	}

	t.Run("mid-FETCH", func(t *testing.T) {
		big := message("cut-fetch", 2<<20)
		if err := r.dc.Deliver(bob, big); err != nil {
			t.Fatal(err)
		}
		imapProxy.set(cutTransfer, "FETCH", 512<<10)
		c, br := r.rawIMAPSession(t)
		io.WriteString(c, "s SELECT INBOX\r\n")
		if err := expectTagged(br, "s ", "s OK"); err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "f FETCH 1 BODY.PEEK[]\r\n")
		got, err := readAllUntilClosed(c, 4<<20)
		if err != nil {
			t.Fatalf("the relayed session did not end cleanly: %v", err)
		}
		c.Close() // the daemon half-closed; the client closes its side
		if strings.Contains(got, "f OK") || len(got) >= len(big) {
			t.Fatalf("the FETCH completed (%d bytes) although the upstream was cut", len(got))
		}
		r.expectLog(t, "msg=closed", "proto=imap", "identity=bob@contoso.test", "ended_by=upstream")
		// Nothing was lost: the whole message is there on the next session.
		imapProxy.set(cutNothing, "", 0)
		c, br = r.rawIMAPSession(t)
		io.WriteString(c, "s SELECT INBOX\r\nf FETCH 1 BODY.PEEK[]\r\n")
		if err := expectTagged(br, "s ", "s OK"); err != nil {
			t.Fatal(err)
		}
		if body := readIMAPLiteral(t, br); !bytes.Equal(body, big) {
			t.Fatalf("after the cut the message has %d bytes, want the %d delivered", len(body), len(big))
		}
	})

	t.Run("mid-RETR after DELE", func(t *testing.T) {
		if err := r.dc.Deliver(bob, message("pop-second", 1<<20)); err != nil {
			t.Fatal(err)
		}
		popProxy.set(cutTransfer, "RETR", 256<<10)
		p := r.rawPOP3Session(t)
		n := popCount(t, p)
		if l := p.cmd("DELE 1"); !strings.HasPrefix(l, "+OK") {
			t.Fatalf("DELE: %q", l)
		}
		fmt.Fprintf(p.conn, "RETR %d\r\n", n)
		if _, err := readAllUntilClosed(p.conn, 4<<20); err != nil {
			t.Fatalf("the relayed session did not end cleanly: %v", err)
		}
		p.conn.Close()
		r.expectLog(t, "msg=closed", "proto=pop3", "identity=bob@contoso.test", "ended_by=upstream")
		// The DELE was never committed (no QUIT): every message is there.
		popProxy.set(cutNothing, "", 0)
		p = r.rawPOP3Session(t)
		if got := popCount(t, p); got != n {
			t.Fatalf("after the cut the maildrop has %d messages, want %d", got, n)
		}
	})
	if r.storeDigest() != before {
		t.Error("the token store changed")
	}
}

// rawIMAPSession logs bob in on a raw connection.
func (r *rig) rawIMAPSession(t *testing.T) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := dialFrom(r.imap, sourceAddr(honestNet, 41))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(c)
	if err := expectLine(br, "* OK"); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "l LOGIN %s \"%s\"\r\n", bobLogin, bobPass)
	if err := expectTagged(br, "l ", "l OK"); err != nil {
		t.Fatal(err)
	}
	return c, br
}

// readIMAPLiteral reads up to the first literal of a FETCH response and
// returns its bytes.
func readIMAPLiteral(t *testing.T, br *bufio.Reader) []byte {
	t.Helper()
	for range maxReplyLines {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if i := strings.LastIndexByte(l, '{'); i >= 0 && strings.HasSuffix(l, "}\r\n") {
			var n int
			if _, err := fmt.Sscanf(l[i:], "{%d}", &n); err != nil {
				t.Fatal(err)
			}
			b := make([]byte, n)
			if _, err := io.ReadFull(br, b); err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	t.Fatal("no literal in the FETCH response")
	return nil
}

// rawPOP3Session logs bob in over POP3.
func (r *rig) rawPOP3Session(t *testing.T) *pop3Client {
	t.Helper()
	p := dialPOP3(t, r.pop3)
	if l := p.cmd("USER %s", bobLogin); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("USER: %q", l)
	}
	if l := p.cmd("PASS %s", bobPass); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("PASS: %q", l)
	}
	return p
}

// popCount returns the number of messages in the maildrop (STAT).
func popCount(t *testing.T, p *pop3Client) int {
	t.Helper()
	var n, size int
	if _, err := fmt.Sscanf(p.cmd("STAT"), "+OK %d %d", &n, &size); err != nil {
		t.Fatal(err)
	}
	return n
}

// smtpKills is how many upstream connections the SMTP fault test breaks
// during DATA.
const smtpKills = 100

func TestFaultSMTPKillsDuringData(t *testing.T) {
	t.Parallel()
	pki := testkit.NewPKI(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d", seed)
	up := newSMTPFaultUpstream(t, pki, seed, 0.5)
	// send_rate 0: the hundreds of messages of this test would otherwise
	// leave at Exchange's 30 a minute.
	r := newRigWith(t, rigOptions{smtpYAML: "send_rate: 0", upstreams: func(*rig) map[string]upstreamConf {
		return map[string]upstreamConf{"smtp": {up.addr, pki.CAFile, "starttls"}}
	}})
	var acked []string
	replies := map[string]int{}
	var c *smtp.Client
	for i := 0; ; i++ {
		if kills, _ := up.counts(); kills >= smtpKills {
			break
		}
		if i > 20*smtpKills {
			t.Fatal("too few kills: is the fault upstream in use?")
		}
		if c == nil {
			var err error
			if c, err = smtp.Dial(r.smtp); err != nil {
				t.Fatal(err)
			}
			if err := c.Hello("fault.contoso.test"); err != nil {
				t.Fatal(err)
			}
			if err := c.Auth(sasl.NewPlainClient("", aliceLogin, alicePass)); err != nil {
				t.Fatalf("AUTH: %v", err)
			}
		}
		id := fmt.Sprintf("<fault-%d-%d@contoso.test>", seed, i)
		err := c.SendMail(alice, []string{bob}, bytes.NewReader(faultMessage(id, 1+int(seed>>3+uint64(i)*7919)%(96<<10))))
		var se *smtp.SMTPError
		switch {
		case err == nil:
			acked = append(acked, id)
			replies["250"]++
			continue
		case errors.As(err, &se):
			replies[fmt.Sprintf("%d %d.%d.%d", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])]++
			if se.Code < 400 || se.Code >= 500 {
				t.Errorf("message %d: a broken upstream gave %v, want a temporary (4xx) reply", i, err)
			}
		default:
			replies["connection closed"]++
		}
		c.Close()
		c = nil
	}
	if c != nil {
		c.Quit()
	}
	kills, late := up.counts()
	lost := 0
	for _, id := range acked {
		if !up.has(id) {
			lost++
			t.Errorf("message %s was acknowledged with 250 but the upstream never kept it", id)
		}
	}
	t.Logf("%d upstream kills during DATA (%d after the message was kept); %d messages acknowledged, %d of them lost; replies %v",
		kills, late, len(acked), lost, replies)
	r.expectLog(t, "proto=smtp")
}

func TestFaultSMTPUpstreamCuts(t *testing.T) {
	t.Parallel()
	pki := testkit.NewPKI(t)
	up := newSMTPFaultUpstream(t, pki, 1, 0)
	half := serveHalfGreeting(t)
	r := newRigWith(t, rigOptions{upstreams: func(*rig) map[string]upstreamConf {
		return map[string]upstreamConf{"smtp": {half, pki.CAFile, "starttls"}}
	}})
	// Mid-greeting.
	if got := r.attemptLogin("smtp", bobLogin, bobPass, sourceAddr(honestNet, 80)); !strings.HasPrefix(got, temporaryReply["smtp"]) {
		t.Errorf("SMTP login with the upstream cut mid-greeting: %q", got)
	}
	r.expectLog(t, "proto=smtp", "result=error", "identity=bob@contoso.test", "EOF", "why=")
	// Mid-login: the upstream breaks the connection at AUTH.
	r.reconfigure(rigOptions{upstreams: func(*rig) map[string]upstreamConf {
		return map[string]upstreamConf{"smtp": {up.addr, pki.CAFile, "starttls"}}
	}})
	up.setKillAuth(true)
	if got := r.attemptLogin("smtp", bobLogin, bobPass, sourceAddr(honestNet, 81)); !strings.HasPrefix(got, temporaryReply["smtp"]) {
		t.Errorf("SMTP login with the upstream cut at AUTH: %q", got)
	}
	r.expectLog(t, "proto=smtp", "result=error", "identity=bob@contoso.test", "AUTH XOAUTH2", "why=")
	up.setKillAuth(false)
	if got := r.attemptLogin("smtp", bobLogin, bobPass, sourceAddr(honestNet, 82)); !strings.HasPrefix(got, successReply["smtp"]) {
		t.Errorf("SMTP login once the upstream works: %q", got)
	}
}

// mountTmpfs mounts a tmpfs of size bytes at a new directory, or skips the
// test when this process may not (mounting needs root).
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs to simulate a read-only or full disk (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

func remount(t *testing.T, dir, mode string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,"+mode, dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s %s: %v: %s", dir, mode, err, out)
	}
}

func TestFaultTokenStoreDisk(t *testing.T) {
	t.Parallel()
	storeDir := mountTmpfs(t, 64<<10)
	r := newRigWith(t, rigOptions{storeDir: storeDir})
	faults := []struct {
		name         string
		break_, mend func(t *testing.T)
		cause, fix   string
	}{
		{"read-only", func(t *testing.T) { remount(t, storeDir, "ro") }, func(t *testing.T) { remount(t, storeDir, "rw") },
			"read-only file system", "make it writable for xoauthd"},
		{"full", func(t *testing.T) { fillDisk(t, storeDir) }, func(t *testing.T) { os.Remove(filepath.Join(storeDir, "filler")) },
			"no space left on device", "free some space"},
	}
	for i, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			r.idp.SetAccessTokenLifetime(time.Second)
			r.login(bob) // a refresh is needed at bob's next login
			before := r.storeDigest()
			f.break_(t)
			r.expectLogins(t, temporaryReply, sourceAddr(honestNet, 50+i))
			for _, proto := range []string{"imap", "pop3", "smtp"} {
				r.expectLog(t, "msg=login", "proto="+proto, "result=error", "identity=bob@contoso.test", f.cause, f.fix)
			}
			f.mend(t)
			if r.storeDigest() != before {
				t.Error("the token store changed while it could not be written")
			}
			// The stored refresh token still works: nothing was lost.
			r.idp.SetAccessTokenLifetime(time.Hour)
			deadline := time.Now().Add(30 * time.Second)
			for {
				got := r.attemptLogin("imap", bobLogin, bobPass, sourceAddr(honestNet, 50+i))
				if strings.HasPrefix(got, "a OK") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after the disk was mended: %q", got)
				}
				time.Sleep(250 * time.Millisecond)
			}
		})
	}
}

// fillDisk fills the file system of dir, leaving nothing free.
func fillDisk(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	for {
		if _, err := f.Write(chunk[:1]); err != nil {
			return
		}
	}
}

func TestFaultTokenStoreKey(t *testing.T) {
	t.Parallel()
	r := newRigWith(t, rigOptions{})
	keyFile := r.cfg.Store.KeyFile
	goodKey, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	otherKey := []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n")
	before := r.storeDigest()
	cases := []struct {
		name  string
		setup func()
		want  []string // the error names the cause and the fix
	}{
		{"missing", func() { os.Remove(keyFile) }, []string{keyFile, "missing", "restore"}},
		{"wrong", func() { os.WriteFile(keyFile, otherKey, 0o600) }, []string{r.storePath(), "key"}},
		{"malformed", func() { os.WriteFile(keyFile, []byte("not a key\n"), 0o600) }, []string{"store.key", "32 random bytes"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup()
			defer os.WriteFile(keyFile, goodKey, 0o600)
			// A malformed key is refused when the configuration loads; a
			// missing or wrong one when the daemon opens the store.
			cfg, err := config.Load(r.configPath())
			if err == nil {
				var d *daemon.Daemon
				if d, err = daemon.New(cfg, daemon.Options{Log: slog.New(slog.DiscardHandler)}); err == nil {
					d.Shutdown(context.Background())
					t.Fatal("the daemon started with a store it cannot read")
				}
			}
			t.Logf("error: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error %q does not name %q", err, w)
				}
			}
			if r.storeDigest() != before {
				t.Error("the token store was changed")
			}
			if tc.name == "missing" {
				if _, err := os.Stat(keyFile); err == nil {
					t.Error("a new key was created although a store encrypted with the old one exists")
				}
			}
		})
	}
	// With the right key the stored tokens are all there.
	r.expectLogins(t, successReply, sourceAddr(honestNet, 60))
}
