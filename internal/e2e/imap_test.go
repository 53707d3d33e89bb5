package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/xoauthd/xoauthd/internal/testidp"
	"github.com/xoauthd/xoauthd/internal/testkit"
)

// message builds an RFC 5322 message with a body of about size bytes.
func message(subject string, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: sender@contoso.test\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@contoso.test>\r\n\r\n", alice, subject, subject)
	raw := make([]byte, size*3/4)
	_, _ = rand.Read(raw)
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 76 {
		b.WriteString(enc[:76])
		b.WriteString("\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return b.Bytes()
}

func requireCurl(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("curl")
	if err != nil {
		if testing.Short() {
			t.Skip("curl not installed")
		}
		t.Fatal("curl is needed by the end-to-end tests: apt-get install curl")
	}
	return p
}

func curl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(requireCurl(t), append([]string{"-sS", "--max-time", "60"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("curl %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

func TestIMAPCurlListAndFetch(t *testing.T) {
	r := newRig(t)
	msg := message("curl-fetch", 2000)
	if err := r.dc.Deliver(alice, msg); err != nil {
		t.Fatal(err)
	}
	out, err := curl(t, "imap://"+r.imap+"/", "-u", aliceLogin+":"+alicePass)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "INBOX") {
		t.Fatalf("LIST through xoauthd did not name INBOX:\n%s", out)
	}
	got, err := curl(t, "imap://"+r.imap+"/INBOX;UID=1", "-u", aliceLogin+":"+alicePass)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(msg) {
		t.Fatalf("fetched %d bytes, want the %d delivered bytes unchanged", len(got), len(msg))
	}
	if _, err := curl(t, "imap://"+r.imap+"/", "-u", aliceLogin+":wrong"); err == nil {
		t.Fatal("curl with a wrong password succeeded")
	}
}

func dialIMAP(t *testing.T, addr string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestIMAPClientLoginFormsAndBigFetch(t *testing.T) {
	r := newRig(t)
	big := message("big", 10<<20)
	if err := r.dc.Deliver(alice, big); err != nil {
		t.Fatal(err)
	}
	logins := []struct {
		name  string
		login func(c *imapclient.Client) error
	}{
		{"LOGIN", func(c *imapclient.Client) error { return c.Login(aliceLogin, alicePass).Wait() }},
		{"AUTHENTICATE PLAIN", func(c *imapclient.Client) error {
			return c.Authenticate(sasl.NewPlainClient("", aliceLogin, alicePass))
		}},
		{"AUTHENTICATE LOGIN", func(c *imapclient.Client) error {
			return c.Authenticate(sasl.NewLoginClient(aliceLogin, alicePass))
		}},
	}
	for _, l := range logins {
		t.Run(l.name, func(t *testing.T) {
			c := dialIMAP(t, r.imap)
			if err := l.login(c); err != nil {
				t.Fatalf("login: %v", err)
			}
			mbox, err := c.Select("INBOX", nil).Wait()
			if err != nil {
				t.Fatal(err)
			}
			if mbox.NumMessages != 1 {
				t.Fatalf("INBOX has %d messages, want 1", mbox.NumMessages)
			}
			section := &imap.FetchItemBodySection{Peek: true}
			msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{section}}).Collect()
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != 1 || !bytes.Equal(msgs[0].FindBodySection(section), big) {
				t.Fatal("the 10 MiB message did not arrive byte for byte")
			}
			if err := c.Logout().Wait(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestIMAPIdleSeesNewMessage(t *testing.T) {
	r := newRig(t)
	watch, newMail := testkit.ExistsWatcher()
	c, err := imapclient.DialInsecure(r.imap, &imapclient.Options{UnilateralDataHandler: watch})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(aliceLogin, alicePass).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	testkit.IdleSeesExists(t, c, newMail, 1, 30*time.Second, func() error {
		return r.dc.Deliver(alice, message("during-idle", 500))
	})
}

// rawIMAPLogin logs in on a raw socket and returns the tagged reply line.
func rawIMAPLogin(t *testing.T, addr, login, pass string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(conn)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "a1 LOGIN %q %q\r\n", login, pass)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the LOGIN reply: %v", err)
		}
		if strings.HasPrefix(line, "a1 ") {
			return strings.TrimRight(line, "\r\n")
		}
	}
}

func TestIMAPFailures(t *testing.T) {
	r := newRig(t)
	if got := rawIMAPLogin(t, r.imap, aliceLogin, "wrong"); !strings.HasPrefix(got, "a1 NO [AUTHENTICATIONFAILED]") {
		t.Errorf("wrong password: %q", got)
	}
	if got := rawIMAPLogin(t, r.imap, "nobody", "x"); !strings.HasPrefix(got, "a1 NO [AUTHENTICATIONFAILED]") {
		t.Errorf("unknown login: %q", got)
	}

	// The identity provider fails, but alice's cached access token is valid.
	if got := rawIMAPLogin(t, r.imap, aliceLogin, alicePass); !strings.HasPrefix(got, "a1 OK") {
		t.Fatalf("first login: %q", got)
	}
	r.idp.FailWith(testidp.Failure{Status: 500})
	if got := rawIMAPLogin(t, r.imap, aliceLogin, alicePass); !strings.HasPrefix(got, "a1 OK") {
		t.Errorf("IdP down, cached token valid: %q", got)
	}
	r.idp.ClearFailure()

	// bob signs in again and gets an access token that expires at once: a
	// refresh is then needed on every use, so an outage of the identity
	// provider is UNAVAILABLE and a revoked grant CONTACTADMIN (the local
	// password was right: an administrator must sign in again).
	r.idp.SetAccessTokenLifetime(time.Second)
	r.login(bob)
	time.Sleep(1100 * time.Millisecond)
	r.idp.FailWith(testidp.Failure{Status: 503, RetryAfter: time.Second})
	if got := rawIMAPLogin(t, r.imap, bobLogin, bobPass); !strings.HasPrefix(got, "a1 NO [UNAVAILABLE]") {
		t.Errorf("IdP down, token expiring: %q", got)
	}
	r.idp.ClearFailure()
	r.idp.RevokeUser(bob)
	// Wait out the back-off the 503 started, then the refresh reaches the IdP.
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := rawIMAPLogin(t, r.imap, bobLogin, bobPass)
		if strings.HasPrefix(got, "a1 NO [CONTACTADMIN]") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revoked grant: %q", got)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(r.logs.String(), "AADSTS700082") {
		t.Error("the log does not name AADSTS700082 for the revoked grant")
	}

	// Dovecot down: UNAVAILABLE.
	if err := r.dc.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := rawIMAPLogin(t, r.imap, aliceLogin, alicePass); !strings.HasPrefix(got, "a1 NO [UNAVAILABLE]") {
		t.Errorf("upstream down: %q", got)
	}
}
