package e2e

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// sendViaXoauthd sends msg through xoauthd's SMTP listener with go-smtp's client.
func sendViaXoauthd(t *testing.T, addr string, auth sasl.Client, from string, to []string, msgs ...[]byte) error {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("erp.contoso.test"); err != nil {
		return err
	}
	if err := c.Auth(auth); err != nil {
		return err
	}
	for _, msg := range msgs {
		if err := c.SendMail(from, to, bytes.NewReader(msg)); err != nil {
			return err
		}
	}
	return c.Quit()
}

func TestSMTPClientAuthFormsAndSizes(t *testing.T) {
	r := newRig(t)
	eightBit := []byte("From: alice@contoso.test\r\nTo: bob@contoso.test\r\nSubject: Grüße\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nÄrger mit der Übertragung? Nein.\r\n")
	cases := []struct {
		name string
		auth sasl.Client
		msgs [][]byte
	}{
		{"PLAIN 1 KiB", sasl.NewPlainClient("", aliceLogin, alicePass), [][]byte{message("one-kib", 1024)}},
		{"LOGIN 8-bit", sasl.NewLoginClient(aliceLogin, alicePass), [][]byte{eightBit}},
		{"PLAIN three in one session", sasl.NewPlainClient("", aliceLogin, alicePass), [][]byte{message("m1", 500), message("m2", 700), message("m3", 900)}},
		{"PLAIN 25 MiB", sasl.NewPlainClient("", aliceLogin, alicePass), [][]byte{message("big", 25<<20)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(r.dc.Sink.Messages())
			if err := sendViaXoauthd(t, r.smtp, tc.auth, alice, []string{bob}, tc.msgs...); err != nil {
				t.Fatalf("sending: %v", err)
			}
			got, err := r.dc.Sink.WaitFor(before+len(tc.msgs), 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range tc.msgs {
				m := got[before+i]
				if !bytes.Equal(stripReceived(m.Data), want) {
					t.Errorf("message %d: sink has %d bytes, want the %d sent bytes unchanged", i, len(m.Data), len(want))
				}
				if m.From != alice || len(m.To) != 1 || m.To[0] != bob {
					t.Errorf("message %d: envelope %s → %v", i, m.From, m.To)
				}
			}
		})
	}
}

func TestSMTPCurlSendThenIMAPFetch(t *testing.T) {
	r := newRig(t)
	msg := []byte("From: alice@contoso.test\r\nTo: bob@contoso.test\r\nSubject: via curl\r\nMessage-ID: <curl-1@contoso.test>\r\n\r\nsent by curl through xoauthd\r\n")
	file := filepath.Join(t.TempDir(), "msg.eml")
	if err := os.WriteFile(file, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := curl(t, "smtp://"+r.smtp, "--mail-from", alice, "--mail-rcpt", bob, "-u", aliceLogin+":"+alicePass, "-T", file); err != nil {
		t.Fatal(err)
	}
	if _, err := r.dc.Sink.WaitFor(1, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// The sink delivered into bob's Maildir: bob reads it through xoauthd.
	got, err := curl(t, "imap://"+r.imap+"/INBOX;UID=1", "-u", bobLogin+":"+bobPass)
	if err != nil {
		t.Fatal(err)
	}
	if string(stripReceived([]byte(got))) != string(msg) {
		t.Fatalf("bob fetched %q, want %q", got, msg)
	}
	if _, err := curl(t, "smtp://"+r.smtp, "--mail-from", alice, "--mail-rcpt", bob, "-u", aliceLogin+":bad", "-T", file); err == nil {
		t.Fatal("curl with a wrong password sent mail")
	}
}

func TestSMTPFailures(t *testing.T) {
	r := newRig(t)
	err := sendViaXoauthd(t, r.smtp, sasl.NewPlainClient("", aliceLogin, "wrong"), alice, []string{bob}, message("x", 10))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 535 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 8}) {
		t.Errorf("wrong password: %v, want 535 5.7.8", err)
	}
	// The upstream refuses the message after DATA: the client sees the
	// upstream's reply, and nothing is acknowledged.
	r.dc.Sink.SetDataError(&smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "sink full"})
	err = sendViaXoauthd(t, r.smtp, sasl.NewPlainClient("", aliceLogin, alicePass), alice, []string{bob}, message("refused", 100))
	if !errors.As(err, &se) || se.Code/100 != 4 {
		t.Errorf("upstream refusing DATA: %v, want a 4xx", err)
	}
	r.dc.Sink.SetDataError(nil)
	if err := r.dc.Stop(); err != nil {
		t.Fatal(err)
	}
	err = sendViaXoauthd(t, r.smtp, sasl.NewPlainClient("", aliceLogin, alicePass), alice, []string{bob}, message("down", 10))
	if !errors.As(err, &se) || se.Code != 454 {
		t.Errorf("upstream down: %v, want 454 4.7.0", err)
	}
	if strings.Contains(r.logs.String(), alicePass) {
		t.Error("the log contains a local password")
	}
}

// stripReceived removes the Received: trace header that Dovecot's submission
// service puts in front of a message (RFC 5321 §4.4); everything after it
// must be the client's bytes unchanged.
func stripReceived(b []byte) []byte {
	if !bytes.HasPrefix(b, []byte("Received:")) {
		return b
	}
	for i := 0; i+2 < len(b); {
		j := bytes.Index(b[i:], []byte("\r\n"))
		if j < 0 {
			return b
		}
		i += j + 2
		if b[i] != ' ' && b[i] != '\t' {
			return b[i:]
		}
	}
	return b
}

// TestSMTPPipelinedToDovecot: a client that pipelines (RFC 2920) its
// envelope and DATA; xoauthd pipelines them on to Dovecot's submission
// service. Every reply comes back in order and each message reaches the
// sink with its whole envelope and its bytes unchanged.
func TestSMTPPipelinedToDovecot(t *testing.T) {
	r := newRig(t)
	conn, err := net.Dial("tcp", r.smtp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(conn)
	reply := func(want string) string {
		t.Helper()
		var all string
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("reading the reply: %v (so far %q)", err, all)
			}
			all += line
			if len(line) < 4 || line[3] != '-' {
				break
			}
		}
		if !strings.HasPrefix(all, want) {
			t.Fatalf("reply %q, want %s", all, want)
		}
		return all
	}
	send := func(s string) {
		t.Helper()
		if _, err := io.WriteString(conn, s); err != nil {
			t.Fatal(err)
		}
	}
	reply("220")
	send("EHLO erp.contoso.test\r\n")
	if ehlo := reply("250"); !strings.Contains(ehlo, "PIPELINING") {
		t.Fatalf("EHLO does not offer PIPELINING: %q", ehlo)
	}
	send("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+aliceLogin+"\x00"+alicePass)) + "\r\n")
	reply("235")
	before := len(r.dc.Sink.Messages())
	var sent [][]byte
	for i := range 3 {
		msg := message(fmt.Sprintf("pipelined %d", i), 20<<10)
		sent = append(sent, msg)
		send("MAIL FROM:<" + alice + ">\r\nRCPT TO:<" + bob + ">\r\nRCPT TO:<" + alice + ">\r\nDATA\r\n")
		for _, want := range []string{"250", "250", "250", "354"} {
			reply(want)
		}
		send(string(msg) + ".\r\n")
		reply("250")
	}
	send("QUIT\r\n")
	reply("221")
	got, err := r.dc.Sink.WaitFor(before+len(sent), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range sent {
		m := got[before+i]
		if !bytes.Equal(stripReceived(m.Data), want) {
			t.Errorf("message %d: the sink has %d bytes, want the %d sent unchanged", i, len(m.Data), len(want))
		}
		if m.From != alice || strings.Join(m.To, ",") != bob+","+alice {
			t.Errorf("message %d: envelope %s -> %v", i, m.From, m.To)
		}
	}
}

// TestSMTPDovecotQueueIDReachesClient: the client gets Dovecot's own reply
// to the end of the message, with the queue id of the server Dovecot relayed
// to (the sink, which answers as Postfix does), not go-smtp's generic
// "250 2.0.0 OK: queued".
func TestSMTPDovecotQueueIDReachesClient(t *testing.T) {
	r := newRig(t)
	c, err := smtp.Dial(r.smtp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", aliceLogin, alicePass)); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := c.Mail(alice, nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt(bob, nil); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(message(fmt.Sprintf("queue-id-%d", i), 300)); err != nil {
			t.Fatal(err)
		}
		resp, err := w.CloseWithResponse()
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.dc.Sink.WaitFor(i+1, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if want := "2.0.0 Ok: queued as " + got[i].QueueID; resp.StatusText != want {
			t.Errorf("message %d: reply %q, want Dovecot's %q", i, resp.StatusText, want)
		}
	}
}
