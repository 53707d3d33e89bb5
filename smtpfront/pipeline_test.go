package smtpfront

import (
	"bufio"
	"context"
	"io"
	"log"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/proxy"
)

const pipeBody = "Subject: pipelined\r\n\r\nhello\r\n"

// findChunk returns the first chunk the upstream read that holds want.
func findChunk(chunks []string, want string) (string, bool) {
	for _, c := range chunks {
		if strings.Contains(c, want) {
			return c, true
		}
	}
	return "", false
}

// TestPipelinedRcptsGoUpstreamWithMail: the RCPTs a client pipelines behind
// MAIL reach the upstream in the same write as the MAIL, each RCPT still
// gets the upstream's own reply (a refused one in the middle included), and
// a client that waits for each reply gets its commands relayed one by one.
func TestPipelinedRcptsGoUpstreamWithMail(t *testing.T) {
	h := newHarness(t, recordUpstreamWire{})
	h.up.set(func(f *fakeUpstream) {
		f.refuseRcpt = map[string]*smtp.SMTPError{
			"bad@example.net": {Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 10}, Message: "Recipient not found"},
		}
	})
	tc := h.transcript()
	tc.cmd("EHLO client.test", "250 ")
	tc.cmd("AUTH PLAIN "+plainIR("", testLogin, testPassword), "235")

	tc.write("MAIL FROM:<billing@example.com>\r\nRCPT TO:<a@example.net>\r\nRCPT TO:<bad@example.net>\r\nrcpt to:<B.c+d@Example.NET>\r\nDATA\r\n")
	tc.expect("250 ")
	tc.expect("250 ")
	if got := tc.expect("550 "); !strings.Contains(got, "5.1.10 Recipient not found") {
		t.Fatalf("refused RCPT: %q, want the upstream's reply", got)
	}
	tc.expect("250 ")
	tc.expect("354 ")
	tc.write(pipeBody + ".\r\n")
	tc.expect("250 ")

	// One command per write: nothing to pipeline.
	tc.cmd("MAIL FROM:<billing@example.com>", "250 ")
	tc.cmd("RCPT TO:<solo@example.net>", "250 ")
	tc.cmd("DATA", "354 ")
	tc.write(pipeBody + ".\r\n")
	tc.expect("250 ")
	tc.cmd("QUIT", "221 ")

	msgs := h.up.messages()
	if len(msgs) != 2 || !slices.Equal(msgs[0].to, []string{"a@example.net", "B.c+d@Example.NET"}) ||
		!slices.Equal(msgs[1].to, []string{"solo@example.net"}) || string(msgs[0].data) != pipeBody {
		t.Fatalf("upstream got %+v", msgs)
	}
	chunks := h.up.wire.list()
	first, ok := findChunk(chunks, "MAIL FROM:<billing@example.com>")
	if !ok || !strings.Contains(first, "\r\nRCPT TO:<a@example.net>\r\nRCPT TO:<bad@example.net>\r\nRCPT TO:<B.c+d@Example.NET>\r\n") {
		t.Fatalf("the pipelined RCPTs did not reach the upstream with the MAIL; upstream read %q", chunks)
	}
	solo, ok := findChunk(chunks, "RCPT TO:<solo@example.net>")
	if !ok || strings.Contains(solo, "MAIL FROM:") {
		t.Fatalf("a RCPT sent on its own went upstream with the MAIL; upstream read %q", chunks)
	}
}

// TestPipelinedRcptsOutOfStep: go-smtp's server refuses recipients past its
// limit without asking the session, after they went upstream with the
// MAIL. The upstream must end up with exactly the recipients the client was
// told were accepted, whether the upstream accepted the extra ones (the
// transaction is restarted) or refused them, and whether the client goes
// on with DATA or RSET.
func TestPipelinedRcptsOutOfStep(t *testing.T) {
	const envelope = "MAIL FROM:<billing@example.com>\r\nRCPT TO:<a@example.net>\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\nRCPT TO:<d@example.net>\r\n"
	refusedUpstream := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 10}, Message: "Recipient not found"}
	for _, tt := range []struct {
		name        string
		upRefusesCD bool
		rset        bool
		wantTo      []string
		wantRestart bool
	}{
		{"upstream accepts the extra ones, DATA", false, false, []string{"a@example.net", "b@example.net"}, true},
		{"upstream refuses the extra ones, DATA", true, false, []string{"a@example.net", "b@example.net"}, false},
		{"upstream accepts the extra ones, RSET", false, true, []string{"e@example.net"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(s *Server) { s.maxRcpts, s.maxPipelined = 2, 4 })
			if tt.upRefusesCD {
				h.up.set(func(f *fakeUpstream) {
					f.refuseRcpt = map[string]*smtp.SMTPError{"c@example.net": refusedUpstream, "d@example.net": refusedUpstream}
				})
			}
			tc := h.transcript()
			tc.cmd("EHLO client.test", "250 ")
			tc.cmd("AUTH PLAIN "+plainIR("", testLogin, testPassword), "235")
			if tt.rset {
				tc.write(envelope + "RSET\r\nMAIL FROM:<billing@example.com>\r\nRCPT TO:<e@example.net>\r\nDATA\r\n")
				for _, want := range []string{"250 ", "250 ", "250 ", "452 ", "452 ", "250 ", "250 ", "250 ", "354 "} {
					tc.expect(want)
				}
			} else {
				tc.write(envelope + "DATA\r\n")
				for _, want := range []string{"250 ", "250 ", "250 ", "452 ", "452 ", "354 "} {
					tc.expect(want)
				}
			}
			tc.write(pipeBody + ".\r\n")
			tc.expect("250 ")
			tc.cmd("QUIT", "221 ")
			msgs := h.up.messages()
			if len(msgs) != 1 || !slices.Equal(msgs[0].to, tt.wantTo) {
				t.Fatalf("upstream got %+v, want one message to %v", msgs, tt.wantTo)
			}
			if got := strings.Contains(h.log.String(), "restarting the upstream transaction"); got != tt.wantRestart {
				t.Fatalf("upstream transaction restarted: %v, want %v\n%s", got, tt.wantRestart, h.log)
			}
		})
	}
}

// TestPipelinedRcptsBehindRefusedMAIL: when the upstream refuses the MAIL,
// the RCPTs that went with it are answered there too; the client gets the
// upstream's MAIL reply and go-smtp's own refusals, and the next
// transaction is relayed in step.
func TestPipelinedRcptsBehindRefusedMAIL(t *testing.T) {
	h := newHarness(t)
	h.up.set(func(f *fakeUpstream) {
		f.mailErr = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 60}, Message: "Client does not have permissions to send as this sender"}
	})
	tc := h.transcript()
	tc.cmd("EHLO client.test", "250 ")
	tc.cmd("AUTH PLAIN "+plainIR("", testLogin, testPassword), "235")
	tc.write("MAIL FROM:<ceo@example.com>\r\nRCPT TO:<a@example.net>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
	if got := tc.expect("550 "); !strings.Contains(got, "5.7.60") {
		t.Fatalf("MAIL: %q, want the upstream's 5.7.60", got)
	}
	for _, want := range []string{"502 ", "502 ", "502 "} {
		tc.expect(want)
	}
	h.up.set(func(f *fakeUpstream) { f.mailErr = nil })
	tc.write("MAIL FROM:<billing@example.com>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n")
	for _, want := range []string{"250 ", "250 ", "354 "} {
		tc.expect(want)
	}
	tc.write(pipeBody + ".\r\nQUIT\r\n")
	tc.expect("250 ")
	tc.expect("221 ")
	msgs := h.up.messages()
	if len(msgs) != 1 || !slices.Equal(msgs[0].to, []string{"c@example.net"}) || msgs[0].from != "billing@example.com" {
		t.Fatalf("upstream got %+v", msgs)
	}
}

// TestRcptOutOfStepRealigns drives a session directly: go-smtp passes it a
// recipient other than the next one that went upstream with the MAIL (as
// it would after refusing one itself). The upstream transaction is
// restarted and holds only what the client was told.
func TestRcptOutOfStepRealigns(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	acct, err := h.auth.Authenticate(ctx, testLogin, testPassword, netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	up, err := h.front.connect(ctx, acct)
	if err != nil {
		t.Fatal(err)
	}
	client, server := net.Pipe()
	defer client.Close()
	cc := newClientConn(ctx, &proxy.Conn{Conn: server}, server, h.front.opts.Log, 0, 0)
	s := newSession(h.front, cc)
	s.acct, s.release = acct, func() {}
	s.setUpstream(up)

	// go-smtp has just read the MAIL line; two RCPTs wait behind it.
	cc.noteLine([]byte("MAIL FROM:<billing@example.com>\r\n"))
	cc.pend = []byte("RCPT TO:<a@example.net>\r\nRCPT TO:<b@example.net>\r\n")
	if err := s.Mail("billing@example.com", nil); err != nil {
		t.Fatal(err)
	}
	if got := up.conn.ahead; !slices.Equal(got, []string{"a@example.net", "b@example.net"}) {
		t.Fatalf("sent ahead %v, want both RCPTs", got)
	}
	if err := s.Rcpt("b@example.net", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Data(strings.NewReader(pipeBody)); err != nil {
		t.Fatal(err)
	}
	s.Logout()
	msgs := h.up.messages()
	if len(msgs) != 1 || !slices.Equal(msgs[0].to, []string{"b@example.net"}) {
		t.Fatalf("upstream got %+v, want one message to b only", msgs)
	}
	if !strings.Contains(h.log.String(), "restarting the upstream transaction") {
		t.Fatalf("no restart logged:\n%s", h.log)
	}
}

func TestParseRcptLine(t *testing.T) {
	for _, tt := range []struct {
		line, addr string
	}{
		{"RCPT TO:<a@example.net>\r\n", "a@example.net"},
		{"rcpt to:<A.b+c@Mail-1.Example.NET>\r\n", "A.b+c@Mail-1.Example.NET"},
		{"Rcpt To:<o'neil!#$%&*/=?^_`{|}~-@x>\r\n", "o'neil!#$%&*/=?^_`{|}~-@x"},
		{"RCPT TO:<a@example.net>\n", ""},                // bare LF
		{"RCPT TO:<a@example.net> NOTIFY=NEVER\r\n", ""}, // parameters
		{"RCPT TO: <a@example.net>\r\n", ""},             // space
		{"RCPT  TO:<a@example.net>\r\n", ""},
		{"RCPT TO:a@example.net\r\n", ""},
		{"RCPT TO:<@relay:a@example.net>\r\n", ""}, // source route
		{"RCPT TO:<\"a b\"@example.net>\r\n", ""},  // quoted local part
		{"RCPT TO:<a@[192.0.2.1]>\r\n", ""},        // address literal
		{"RCPT TO:<a@>\r\n", ""},
		{"RCPT TO:<@example.net>\r\n", ""},
		{"RCPT TO:<a@b@example.net>\r\n", ""},
		{"RCPT TO:<jörg@example.net>\r\n", ""}, // SMTPUTF8
		{"RCPT TO:<Postmaster>\r\n", ""},
		{"RCPT TO:<>\r\n", ""},
		{"RCPT FROM:<a@example.net>\r\n", ""},
		{"RCPT TO:<a@example.net>\r\nRCPT TO:<b@example.net>\r\n", ""},
		{"RCPT TO:<" + strings.Repeat("a", 260) + "@x.y>\r\n", ""}, // longer than a path may be
		{"RCPT TO:<a\x00b@example.net>\r\n", ""},
	} {
		addr, ok := parseRcptLine([]byte(tt.line))
		if addr != tt.addr || ok != (tt.addr != "") {
			t.Errorf("parseRcptLine(%q) = %q, %v; want %q", tt.line, addr, ok, tt.addr)
		}
		if ok {
			if got, gok := goSMTPRcpt(t, tt.line); !gok || got != addr {
				t.Errorf("go-smtp parses %q to %q (%v), parseRcptLine to %q", tt.line, got, gok, addr)
			}
		}
	}
}

// FuzzParseRcptLine: whatever line parseRcptLine accepts, go-smtp's server
// passes the session exactly the address parseRcptLine found.
func FuzzParseRcptLine(f *testing.F) {
	for _, s := range []string{"RCPT TO:<a@example.net>\r\n", "rcpt to:<x.y@z>\r\n", "RCPT TO:<a@b> X=1\r\n", "RCPT TO:<\"q\"@b>\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		addr, ok := parseRcptLine([]byte(line))
		if !ok {
			return
		}
		if got, gok := goSMTPRcpt(t, line); !gok || got != addr {
			t.Fatalf("go-smtp parses %q to %q (%v), parseRcptLine to %q", line, got, gok, addr)
		}
	})
}

// goSMTPRcpt returns what a go-smtp server configured like the front's
// passes to Session.Rcpt for line, sent after a MAIL.
func goSMTPRcpt(t testing.TB, line string) (string, bool) {
	t.Helper()
	rec := &rcptRecorder{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return rec, nil }))
	srv.Domain = "oracle.test"
	srv.MaxLineLength = maxLineLength
	srv.MaxRecipients = maxRecipients
	srv.AllowInsecureAuth = true
	srv.ErrorLog = log.New(io.Discard, "", 0)
	ln := newChanListener()
	defer ln.Close()
	go srv.Serve(ln)
	client, server := net.Pipe()
	defer client.Close()
	if !ln.hand(context.Background(), server) {
		t.Fatal("oracle server did not take the connection")
	}
	client.SetDeadline(time.Now().Add(10 * time.Second))
	go io.WriteString(client, "EHLO oracle\r\nMAIL FROM:<s@example.com>\r\n"+line+"QUIT\r\n")
	br := bufio.NewReader(client)
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("oracle: %v", err)
		}
		if strings.HasPrefix(l, "221 ") {
			break
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.rcpts) != 1 {
		return "", false
	}
	return rec.rcpts[0], true
}

type rcptRecorder struct {
	mu    sync.Mutex
	rcpts []string
}

func (r *rcptRecorder) Mail(string, *smtp.MailOptions) error { return nil }
func (r *rcptRecorder) Rcpt(to string, _ *smtp.RcptOptions) error {
	r.mu.Lock()
	r.rcpts = append(r.rcpts, to)
	r.mu.Unlock()
	return nil
}
func (r *rcptRecorder) Data(io.Reader) error { return nil }
func (r *rcptRecorder) Reset()               {}
func (r *rcptRecorder) Logout() error        { return nil }
