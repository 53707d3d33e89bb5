package smtpfront

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/internal/testkit"
)

func TestMessagesArriveByteForByte(t *testing.T) {
	tests := []struct {
		name string
		from string
		to   []string
		data []byte
	}{
		{"1 KiB", testMailbox, []string{"bob@example.net"}, testMessage("one-kib", 30)},
		{"8-bit", testMailbox, []string{"bob@example.net"}, []byte("From: <billing@example.com>\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xc3\xa4\xc3\xb6\xc3\xbc \xff\xfe raw bytes\r\n..two dots\r\n.\r\n \r\n")},
		{"SMTPUTF8", "bïlling@exämple.com", []string{"bøb@exämple.net"}, []byte("From: bïlling@exämple.com\r\nTo: bøb@exämple.net\r\nSubject: ünïcödé\r\n\r\nGrüße\r\n")},
		{"25 MiB", testMailbox, []string{"bob@example.net", "carol@example.net"}, testkit.DottedMessage(largeMessageSize)},
	}
	h := newHarness(t)
	h.loggedIn().Quit() // learn the upstream's EHLO, so SMTPUTF8 is offered
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(h.up.messages())
			c := h.loggedIn()
			if err := send(c, tt.from, tt.to, tt.data); err != nil {
				t.Fatalf("send: %v", err)
			}
			if err := c.Quit(); err != nil {
				t.Fatalf("Quit: %v", err)
			}
			msgs := h.up.messages()
			if len(msgs) != before+1 {
				t.Fatalf("upstream has %d new messages, want 1", len(msgs)-before)
			}
			got := msgs[before]
			if !bytes.Equal(got.data, tt.data) {
				t.Fatalf("message changed on the way: got %d bytes, want %d", len(got.data), len(tt.data))
			}
			if got.from != tt.from || !slices.Equal(got.to, tt.to) {
				t.Fatalf("envelope %q -> %q, want %q -> %q", got.from, got.to, tt.from, tt.to)
			}
		})
	}
}

func TestSeveralMessagesOneUpstreamSession(t *testing.T) {
	h := newHarness(t)
	c := h.loggedIn()
	var want [][]byte
	for i := range 3 {
		m := testMessage(fmt.Sprintf("multi-%d", i), 5)
		want = append(want, m)
		if err := send(c, testMailbox, []string{"bob@example.net"}, m); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	c.Quit()
	msgs := h.up.messages()
	if len(msgs) != len(want) {
		t.Fatalf("upstream got %d messages, want %d", len(msgs), len(want))
	}
	for i := range want {
		if !bytes.Equal(msgs[i].data, want[i]) {
			t.Errorf("message %d differs", i)
		}
	}
	h.up.set(func(f *fakeUpstream) {
		if len(f.users) != 1 {
			t.Errorf("upstream logins = %d, want 1 for the whole session", len(f.users))
		}
	})
}

func TestRSETIsPassedOn(t *testing.T) {
	h := newHarness(t)
	tc := h.loggedInTranscript()
	tc.cmd("MAIL FROM:<first@example.com>", "250")
	tc.cmd("RCPT TO:<dropped@example.net>", "250")
	tc.cmd("RSET", "250")
	tc.data("second@example.com", "kept@example.net")
	tc.write("Subject: after rset\r\n\r\nbody\r\n.\r\n")
	tc.expect("250 ")
	tc.cmd("QUIT", "221")
	msgs := h.up.messages()
	if len(msgs) != 1 || msgs[0].from != "second@example.com" || !slices.Equal(msgs[0].to, []string{"kept@example.net"}) {
		t.Fatalf("upstream got %+v, want one message second -> kept only", msgs)
	}
}

func TestPipelinedCommands(t *testing.T) {
	h := newHarness(t)
	tc := h.loggedInTranscript()
	// RFC 2920: the whole envelope in one write, then the message and QUIT in
	// another.
	tc.write("MAIL FROM:<billing@example.com>\r\nRCPT TO:<a@example.net>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
	for _, want := range []string{"250 ", "250 ", "250 ", "354 "} {
		tc.expect(want)
	}
	body := "Subject: pipelined\r\n\r\n..dot\r\nend\r\n"
	tc.write(body + ".\r\nMAIL FROM:<billing@example.com>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n")
	for _, want := range []string{"250 ", "250 ", "250 ", "354 "} {
		tc.expect(want)
	}
	tc.write(body + ".\r\nQUIT\r\n")
	tc.expect("250 ")
	tc.expect("221 ")
	msgs := h.up.messages()
	if len(msgs) != 2 || string(msgs[0].data) != "Subject: pipelined\r\n\r\n.dot\r\nend\r\n" ||
		!slices.Equal(msgs[0].to, []string{"a@example.net", "b@example.net"}) || !slices.Equal(msgs[1].to, []string{"c@example.net"}) {
		t.Fatalf("upstream got %+v", msgs)
	}
}

func TestBDATIsRelayedAsDATA(t *testing.T) {
	h := newHarness(t)
	tc := h.loggedInTranscript()
	tc.cmd("MAIL FROM:<billing@example.com>", "250")
	tc.cmd("RCPT TO:<a@example.net>", "250")
	part1, part2 := "Subject: chunks\r\n\r\n.leading dot\r\n", "second chunk\r\n"
	tc.write(fmt.Sprintf("BDAT %d\r\n%s", len(part1), part1))
	tc.expect("250 ")
	tc.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(part2), part2))
	tc.expect("250 ")

	// A BDAT transfer cut by RSET submits nothing.
	tc.cmd("MAIL FROM:<billing@example.com>", "250")
	tc.cmd("RCPT TO:<b@example.net>", "250")
	tc.write(fmt.Sprintf("BDAT %d\r\n%s", len(part1), part1))
	tc.expect("250 ")
	tc.cmd("RSET", "250")
	tc.cmd("QUIT", "221")
	msgs := h.up.messages()
	if len(msgs) != 1 || string(msgs[0].data) != part1+part2 {
		t.Fatalf("upstream got %+v, want only the first message", msgs)
	}
}

func TestMessageOverSizeIsRefusedAndNotSubmitted(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.MaxMessageBytes = 4096 })
	tc := h.loggedInTranscript()
	tc.cmd("MAIL FROM:<billing@example.com> SIZE=100000", "552 5.3.4")
	tc.data("billing@example.com", "a@example.net")
	tc.write(string(testkit.DottedMessage(8192)) + ".\r\n")
	tc.expect("552 5.3.4")
	// The session goes on with a new upstream session.
	tc.data("billing@example.com", "a@example.net")
	tc.write("Subject: small\r\n\r\nok\r\n.\r\n")
	tc.expect("250 ")
	msgs := h.up.messages()
	if len(msgs) != 1 || string(msgs[0].data) != "Subject: small\r\n\r\nok\r\n" {
		t.Fatalf("upstream got %d messages (%+v), want only the small one", len(msgs), msgs)
	}
}

func TestUpstreamRepliesPassThroughUnchanged(t *testing.T) {
	sendAs := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 60}, Message: "SMTP; Client does not have permissions to send as this sender"}
	sendAsData := &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 2, 252},
		Message: "SendAsDenied; alice@example.com not allowed to send as billing@example.com; STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied"}
	busy := &smtp.SMTPError{Code: 432, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "STOREDRV.ClientSubmit; sender thread limit exceeded"}
	multi := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "first line\nsecond line"}
	tests := []struct {
		name  string
		set   func(f *fakeUpstream)
		reply string // the client's reply to the failing command, verbatim
		fix   string // in the log
	}{
		{"send as at MAIL", func(f *fakeUpstream) { f.mailErr = sendAs }, "550 5.7.60 SMTP; Client does not have permissions to send as this sender\r\n", "Add-RecipientPermission"},
		{"send as at DATA", func(f *fakeUpstream) { f.dataErr = sendAsData }, "554 5.2.252 " + sendAsData.Message + "\r\n", "Add-RecipientPermission"},
		{"concurrency limit at RCPT", func(f *fakeUpstream) { f.rcptErr = busy }, "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded\r\n", "max_upstream_per_identity"},
		// go-smtp's server (the fake) puts the enhanced code on the last line only.
		{"multi-line", func(f *fakeUpstream) { f.rcptErr = multi }, "550-first line\r\n550 5.1.1 second line\r\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.up.set(tt.set)
			tc := h.loggedInTranscript()
			var got string
			if got = tc.cmd("MAIL FROM:<billing@example.com>", ""); strings.HasPrefix(got, "250") {
				if got = tc.cmd("RCPT TO:<a@example.net>", ""); strings.HasPrefix(got, "250") {
					tc.cmd("DATA", "354")
					tc.write("Subject: x\r\n\r\nbody\r\n.\r\n")
					got = tc.expect("")
				}
			}
			if got != tt.reply {
				t.Fatalf("client got %q, want %q", got, tt.reply)
			}
			if tt.fix != "" {
				h.log.waitFor(t, "upstream refused", tt.fix)
			}
			if n := len(h.up.messages()); n != 0 {
				t.Fatalf("upstream stored %d messages", n)
			}
		})
	}
}

// noLossRun sends n messages through one client session while the upstream
// breaks DATA at random points, and checks that every 250 the client saw
// has a delivered copy and every failure is a 4xx.
func noLossRun(t *testing.T, h *harness, c *smtp.Client, n int, seed uint64) {
	rng := newRand(seed)
	plans := make(chan dropPlan, 1)
	h.up.set(func(f *fakeUpstream) {
		f.nextDrop = func() dropPlan {
			select {
			case p := <-plans:
				return p
			default:
				return noDrop
			}
		}
	})
	var ok, failed int
	var accepted [][]byte
	for i := range n {
		msg := testMessage(fmt.Sprintf("noloss-%d-%d", seed, i), 3+rng.IntN(10))
		select {
		case <-plans: // a plan left over by a message that failed before DATA
		default:
		}
		switch r := rng.IntN(10); {
		case r < 6:
			plans <- dropPlan{at: int64(rng.IntN(len(msg) + 1))}
		case r < 7:
			plans <- dropPlan{at: 0, deliverThenDrop: true}
		}
		err := send(c, testMailbox, []string{"bob@example.net"}, msg)
		if err == nil {
			ok++
			accepted = append(accepted, msg)
			continue
		}
		failed++
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code/100 != 4 {
			t.Fatalf("message %d failed with %v, want a 4xx reply", i, err)
		}
		c.Reset()
	}
	delivered := h.up.messages()
	for _, m := range accepted {
		if !slices.ContainsFunc(delivered, func(d fakeMsg) bool { return bytes.Equal(d.data, m) }) {
			t.Errorf("a message the client saw accepted (250) was not delivered intact:\n%s", m)
		}
	}
	if ok == 0 || failed == 0 {
		t.Fatalf("%d accepted, %d failed: the run did not exercise both outcomes", ok, failed)
	}
	t.Logf("seed %d: %d accepted, %d failed with 4xx, %d delivered", seed, ok, failed, len(delivered))
}

func TestNoLossWhenUpstreamBreaksDuringDATA(t *testing.T) {
	h := newHarness(t)
	c := h.loggedIn()
	noLossRun(t, h, c, 100, 1)
	c.Quit()
}

// slowConn writes at most 4 bytes per Write, like a slow client.
type slowConn struct {
	netConn
}

func (s slowConn) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		k := min(4, len(b))
		w, err := s.netConn.Write(b[:k])
		n += w
		if err != nil {
			return n, err
		}
		b = b[k:]
	}
	return n, nil
}

func TestNoLossWithSlowClient(t *testing.T) {
	h := newHarness(t)
	conn, err := dialTCP(h.addr)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClient(slowConn{conn})
	defer c.Close()
	if err := c.Hello("slow.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(sasl.NewLoginClient(testLogin, testPassword)); err != nil {
		t.Fatal(err)
	}
	noLossRun(t, h, c, 100, 2)
	c.Quit()
}

func TestRedialAfterUpstreamFailure(t *testing.T) {
	h := newHarness(t)
	c := h.loggedIn()
	h.up.set(func(f *fakeUpstream) {
		first := true
		f.nextDrop = func() dropPlan {
			if first {
				first = false
				return dropPlan{at: 10}
			}
			return noDrop
		}
	})
	err := send(c, testMailbox, []string{"bob@example.net"}, testMessage("lost", 3))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 4, 2}) {
		t.Fatalf("broken DATA gave %v, want 451 4.4.2", err)
	}
	if err := send(c, testMailbox, []string{"bob@example.net"}, testMessage("after", 3)); err != nil {
		t.Fatalf("next message on the same session: %v", err)
	}
	h.up.set(func(f *fakeUpstream) {
		if len(f.users) != 2 {
			t.Errorf("upstream logins = %d, want 2 (a redial)", len(f.users))
		}
	})
	if msgs := h.up.messages(); len(msgs) != 1 || !strings.Contains(string(msgs[0].data), "after") {
		t.Fatalf("upstream got %d messages, want the second only", len(msgs))
	}
}

func TestIdleUpstreamDropIsHealedAtMAIL(t *testing.T) {
	h := newHarness(t)
	c := h.loggedIn()
	if err := send(c, testMailbox, []string{"bob@example.net"}, testMessage("before", 2)); err != nil {
		t.Fatal(err)
	}
	h.up.dropAll() // the upstream ends the idle session
	if err := send(c, testMailbox, []string{"bob@example.net"}, testMessage("after", 2)); err != nil {
		t.Fatalf("message after the upstream dropped the idle session: %v", err)
	}
	if n := len(h.up.messages()); n != 2 {
		t.Fatalf("upstream got %d messages, want 2", n)
	}
}

func TestUpstreamThatForgetsTheLoginIsReplaced(t *testing.T) {
	h := newHarness(t)
	h.up.set(func(f *fakeUpstream) { f.forgetAuth = true })
	tc := h.loggedInTranscript()
	tc.cmd("MAIL FROM:<billing@example.com>", "250")
	tc.cmd("RCPT TO:<a@example.net>", "250")
	tc.cmd("RSET", "250") // RSET and go-smtp's EHLO after it: the upstream forgets the login
	tc.data("billing@example.com", "b@example.net")
	tc.write("Subject: x\r\n\r\nbody\r\n.\r\n")
	tc.expect("250 ")
	if msgs := h.up.messages(); len(msgs) != 1 || !slices.Equal(msgs[0].to, []string{"b@example.net"}) {
		t.Fatalf("upstream got %+v", msgs)
	}
}

func TestRedialFailuresEndTheSession(t *testing.T) {
	h := newHarness(t)
	tc := h.loggedInTranscript()
	h.up.ln.Close()
	h.up.dropAll()
	for range maxRedialFailures - 1 {
		tc.cmd("MAIL FROM:<billing@example.com>", "451 4.4.1")
	}
	tc.cmd("MAIL FROM:<billing@example.com>", "421 4.4.1")
	tc.expectClosed()
}

func TestUpstreamSessionsPerIdentityAreLimited(t *testing.T) {
	const clients = 10
	h := newHarness(t)
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Go(func() {
			c, err := smtp.Dial(h.addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			if err := c.Auth(sasl.NewPlainClient("", testLogin, testPassword)); err != nil {
				errs <- fmt.Errorf("client %d AUTH: %w", i, err)
				return
			}
			if err := send(c, testMailbox, []string{"bob@example.net"}, testMessage(fmt.Sprintf("conc-%d", i), 20)); err != nil {
				errs <- fmt.Errorf("client %d send: %w", i, err)
				return
			}
			errs <- c.Quit()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := len(h.up.messages()); n != clients {
		t.Errorf("upstream got %d messages, want %d", n, clients)
	}
	h.up.set(func(f *fakeUpstream) {
		if f.maxActive > DefaultMaxUpstreamPerIdentity {
			t.Errorf("upstream saw %d sessions at once, want at most %d", f.maxActive, DefaultMaxUpstreamPerIdentity)
		}
		t.Logf("at most %d upstream sessions at once", f.maxActive)
	})
}

func TestWaitForUpstreamSessionTimesOut(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.MaxUpstreamPerIdentity = 1
		o.UpstreamWait = 50 * time.Millisecond
	})
	holder := h.loggedIn()
	defer holder.Quit()
	tc := h.transcript()
	tc.cmd("EHLO client.test", "250 ")
	tc.cmd("AUTH PLAIN "+plainIR("", testLogin, testPassword), "421 4.3.2")
	tc.expectClosed()
	h.log.waitFor(t, "as many as max_upstream_per_identity allows (none ended within 50ms): raise max_upstream_per_identity")
}

func TestPassThroughKeepsTheUpstreamsLines(t *testing.T) {
	tests := []struct {
		upstream string // as the upstream wrote it
		want     string // as go-smtp's server writes passThrough's result
	}{
		{"550 5.7.60 SMTP; Client does not have permissions to send as this sender", ""},
		{"550 no enhanced code", ""},
		{"554-5.2.252 SendAsDenied;\r\n554 5.2.252 second line", ""},
		{"432-first\r\n432 4.3.2 last only", ""},
		{"451 4.4.2 done", ""},
	}
	for _, tt := range tests {
		t.Run(tt.upstream, func(t *testing.T) {
			want := tt.want
			if want == "" {
				want = tt.upstream
			}
			got := roundTrip(t, tt.upstream)
			if got != want+"\r\n" {
				t.Fatalf("client would see %q, want %q", got, want+"\r\n")
			}
		})
	}
}

// roundTrip parses reply as go-smtp's client does and writes passThrough's
// result as go-smtp's server does, through a pair of in-memory connections.
func roundTrip(t *testing.T, reply string) string {
	t.Helper()
	srvSide, cliSide := net.Pipe()
	defer cliSide.Close()
	go func() {
		defer srvSide.Close()
		r := bufio.NewReader(srvSide)
		io.WriteString(srvSide, "220 up\r\n")
		r.ReadString('\n') // EHLO
		io.WriteString(srvSide, "250 up\r\n")
		r.ReadString('\n') // MAIL
		io.WriteString(srvSide, reply+"\r\n")
		r.ReadString('\n')
	}()
	c := smtp.NewClient(cliSide)
	err := c.Mail("a@example.com", nil)
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("Mail: %v, want an SMTP error", err)
	}
	return writeLikeServer(t, passThrough(se))
}

func TestBrokenClientDataIsNeverSubmitted(t *testing.T) {
	tests := []struct {
		name    string
		opt     func(*Options)
		breakIt func(h *harness, tc *transcript)
	}{
		{"client hangs up", nil, func(_ *harness, tc *transcript) { tc.conn.Close() }},
		{"client goes silent", func(o *Options) { o.IdleTimeout = 200 * time.Millisecond }, func(_ *harness, tc *transcript) {
			if rest := tc.expectClosed(); !strings.HasPrefix(rest, "4") {
				t.Errorf("silent client got %q, want a 4xx before the close", rest)
			}
		}},
		{"forced shutdown", nil, func(h *harness, tc *transcript) {
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			h.psrv.Shutdown(ctx)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []any
			if tt.opt != nil {
				opts = append(opts, tt.opt)
			}
			h := newHarness(t, opts...)
			tc := h.loggedInTranscript()
			tc.data("billing@example.com", "a@example.net")
			tc.write("Subject: partial\r\n\r\nthe first half of a message\r\n")
			testkit.Eventually(t, 10*time.Second, "the upstream DATA has begun", func() bool {
				h.up.mu.Lock()
				defer h.up.mu.Unlock()
				return h.up.dataStarted == 1
			})
			tt.breakIt(h, tc)
			testkit.Eventually(t, 10*time.Second, "the session has ended", func() bool { return h.front.slots.InUse("smtp", testIdentity) == 0 })
			testkit.Eventually(t, 10*time.Second, "the upstream session has ended", func() bool {
				h.up.mu.Lock()
				defer h.up.mu.Unlock()
				return h.up.active == 0
			})
			if n := len(h.up.messages()); n != 0 {
				t.Fatalf("upstream stored %d messages from a broken transfer", n)
			}
		})
	}
}

// BenchmarkDataRelay measures DATA throughput through the front: a client
// sends 1 MiB messages on one session to an upstream that discards them.
func BenchmarkDataRelay(b *testing.B) {
	h := newHarness(b)
	h.up.set(func(f *fakeUpstream) { f.discardData = true })
	c := h.loggedIn()
	msg := testkit.DottedMessage(1 << 20)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if err := send(c, testMailbox, []string{"bob@example.net"}, msg); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	c.Quit()
}

// TestUpstreamSuccessReplyPassedOn: the upstream's reply to the end of a
// message (code, enhanced code, text with its queue id, every line) reaches
// the client byte for byte, for DATA and for BDAT, as its refusals do; it
// used to be go-smtp's own "250 2.0.0 OK: queued".
func TestUpstreamSuccessReplyPassedOn(t *testing.T) {
	tests := []struct {
		name string
		ok   *smtp.SMTPError
		want string
	}{
		{"exchange", &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0},
			Message: "OK <AM0PR10MB1234ABCD@AM0PR10MB1234.EURPRD10.PROD.OUTLOOK.COM> [Hostname=AM0PR10MB1234.EURPRD10.PROD.OUTLOOK.COM]"},
			"250 2.0.0 OK <AM0PR10MB1234ABCD@AM0PR10MB1234.EURPRD10.PROD.OUTLOOK.COM> [Hostname=AM0PR10MB1234.EURPRD10.PROD.OUTLOOK.COM]\r\n"},
		{"multi-line", &smtp.SMTPError{Code: 250, EnhancedCode: smtp.NoEnhancedCode, Message: "2.6.0 queued as 4F2A1\n2.6.0 see you"},
			"250-2.6.0 queued as 4F2A1\r\n250 2.6.0 see you\r\n"},
		{"multi-line, code on the last line only", &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 6, 0}, Message: "queued as 4F2A1\nsee you"},
			"250-queued as 4F2A1\r\n250 2.6.0 see you\r\n"},
		{"without an enhanced code", &smtp.SMTPError{Code: 250, EnhancedCode: smtp.NoEnhancedCode, Message: "Ok: queued as 4F2A1"},
			"250 Ok: queued as 4F2A1\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.up.set(func(f *fakeUpstream) { f.dataOK = tt.ok })
			tc := h.loggedInTranscript()
			tc.data("billing@example.com", "a@example.net")
			tc.write("Subject: queue id\r\n\r\nbody\r\n.\r\n")
			if got := tc.expect("250"); got != tt.want {
				t.Errorf("DATA reply %q, want %q", got, tt.want)
			}
			tc.cmd("MAIL FROM:<billing@example.com>", "250")
			tc.cmd("RCPT TO:<a@example.net>", "250")
			body := "Subject: chunks\r\n\r\nbody\r\n"
			tc.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(body), body))
			if got := tc.expect("250"); got != tt.want {
				t.Errorf("BDAT LAST reply %q, want %q", got, tt.want)
			}
			if n := len(h.up.messages()); n != 2 {
				t.Fatalf("upstream accepted %d messages, want 2", n)
			}
		})
	}
}
