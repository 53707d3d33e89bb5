package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestPOP3CurlListAndRetr(t *testing.T) {
	r := newRig(t)
	msg := message("pop-curl", 3000)
	if err := r.dc.Deliver(alice, msg); err != nil {
		t.Fatal(err)
	}
	out, err := curl(t, "pop3://"+r.pop3+"/", "-u", aliceLogin+":"+alicePass)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "1 ") {
		t.Fatalf("LIST through xoauthd: %q", out)
	}
	got, err := curl(t, "pop3://"+r.pop3+"/1", "-u", aliceLogin+":"+alicePass)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(msg) {
		t.Fatalf("RETR gave %d bytes, want the %d delivered bytes unchanged", len(got), len(msg))
	}
	if _, err := curl(t, "pop3://"+r.pop3+"/", "-u", aliceLogin+":nope"); err == nil {
		t.Fatal("curl with a wrong password succeeded")
	}
}

// pop3Client is a minimal POP3 client for the tests.
type pop3Client struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func dialPOP3(t *testing.T, addr string) *pop3Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(2 * time.Minute))
	c := &pop3Client{t: t, conn: conn, br: bufio.NewReader(conn)}
	if l := c.line(); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("greeting %q", l)
	}
	return c
}

func (c *pop3Client) line() string {
	c.t.Helper()
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("reading a reply: %v", err)
	}
	return strings.TrimRight(l, "\r\n")
}

// cmd sends one command line and returns the status line.
func (c *pop3Client) cmd(format string, args ...any) string {
	c.t.Helper()
	fmt.Fprintf(c.conn, format+"\r\n", args...)
	return c.line()
}

// multiline reads a dot-terminated body and undoes dot-stuffing.
func (c *pop3Client) multiline() []byte {
	c.t.Helper()
	var b bytes.Buffer
	for {
		l, err := c.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			b.Write(l)
			continue
		}
		if err != nil {
			c.t.Fatalf("reading a multi-line reply: %v", err)
		}
		if string(l) == ".\r\n" {
			return b.Bytes()
		}
		if l[0] == '.' {
			l = l[1:]
		}
		b.Write(l)
	}
}

func TestPOP3LoginFormsRetrAndDele(t *testing.T) {
	r := newRig(t)
	big := message("pop-big", 10<<20)
	if err := r.dc.Deliver(alice, big); err != nil {
		t.Fatal(err)
	}
	plain := b64("\x00" + aliceLogin + "\x00" + alicePass)
	logins := []struct {
		name  string
		login func(c *pop3Client) string
	}{
		{"USER/PASS", func(c *pop3Client) string {
			if l := c.cmd("USER %s", aliceLogin); !strings.HasPrefix(l, "+OK") {
				return l
			}
			return c.cmd("PASS %s", alicePass)
		}},
		{"AUTH PLAIN", func(c *pop3Client) string { return c.cmd("AUTH PLAIN %s", plain) }},
		{"AUTH LOGIN", func(c *pop3Client) string {
			if l := c.cmd("AUTH LOGIN"); !strings.HasPrefix(l, "+ ") {
				return l
			}
			if l := c.cmd("%s", b64(aliceLogin)); !strings.HasPrefix(l, "+ ") {
				return l
			}
			return c.cmd("%s", b64(alicePass))
		}},
	}
	for _, l := range logins {
		t.Run(l.name, func(t *testing.T) {
			c := dialPOP3(t, r.pop3)
			if got := l.login(c); !strings.HasPrefix(got, "+OK") {
				t.Fatalf("login: %q", got)
			}
			if got := c.cmd("STAT"); !strings.HasPrefix(got, "+OK 1 ") {
				t.Fatalf("STAT: %q", got)
			}
			if got := c.cmd("UIDL"); !strings.HasPrefix(got, "+OK") {
				t.Fatalf("UIDL: %q", got)
			}
			c.multiline()
			if got := c.cmd("RETR 1"); !strings.HasPrefix(got, "+OK") {
				t.Fatalf("RETR: %q", got)
			}
			if body := c.multiline(); !bytes.Equal(body, big) {
				t.Fatalf("RETR gave %d bytes, want the %d delivered bytes unchanged", len(body), len(big))
			}
			if got := c.cmd("QUIT"); !strings.HasPrefix(got, "+OK") {
				t.Fatalf("QUIT: %q", got)
			}
		})
	}

	c := dialPOP3(t, r.pop3)
	c.cmd("USER %s", aliceLogin)
	if got := c.cmd("PASS %s", alicePass); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("login: %q", got)
	}
	if got := c.cmd("DELE 1"); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("DELE: %q", got)
	}
	if got := c.cmd("QUIT"); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("QUIT: %q", got)
	}
	_, _ = io.Copy(io.Discard, c.br)
	c = dialPOP3(t, r.pop3)
	c.cmd("USER %s", aliceLogin)
	c.cmd("PASS %s", alicePass)
	if got := c.cmd("STAT"); !strings.HasPrefix(got, "+OK 0 ") {
		t.Fatalf("STAT after DELE and QUIT: %q, want an empty maildrop", got)
	}
}

func TestPOP3Failures(t *testing.T) {
	r := newRig(t)
	c := dialPOP3(t, r.pop3)
	c.cmd("USER %s", aliceLogin)
	if got := c.cmd("PASS wrong"); !strings.HasPrefix(got, "-ERR [AUTH]") {
		t.Errorf("wrong password: %q", got)
	}
	if err := r.dc.Stop(); err != nil {
		t.Fatal(err)
	}
	c = dialPOP3(t, r.pop3)
	c.cmd("USER %s", aliceLogin)
	if got := c.cmd("PASS %s", alicePass); !strings.HasPrefix(got, "-ERR [SYS/TEMP]") {
		t.Errorf("upstream down: %q", got)
	}
}
