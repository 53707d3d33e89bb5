package smtpfront

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
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

// TestPipelinedRcptsGoUpstreamWithMail: the RCPTs and DATA a client
// pipelines behind MAIL reach the upstream in the same write as the MAIL,
// each RCPT still gets the upstream's own reply (a refused one in the
// middle included), and a client that waits for each reply gets its
// commands relayed one by one.
func TestPipelinedRcptsGoUpstreamWithMail(t *testing.T) {
	h := newHarness(t, recordUpstreamWire{})
	h.up.set(func(f *fakeUpstream) {
		f.refuseRcpt = map[string]*smtp.SMTPError{
			"bad@example.net": {Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 10}, Message: "Recipient not found"},
		}
	})
	tc := h.loggedInTranscript()

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
	if !ok || !strings.Contains(first, "\r\nRCPT TO:<a@example.net>\r\nRCPT TO:<bad@example.net>\r\nRCPT TO:<B.c+d@Example.NET>\r\nDATA\r\n") {
		t.Fatalf("the pipelined RCPTs and DATA did not reach the upstream with the MAIL; upstream read %q", chunks)
	}
	solo, ok := findChunk(chunks, "RCPT TO:<solo@example.net>")
	if !ok || strings.Contains(solo, "MAIL FROM:") {
		t.Fatalf("a RCPT sent on its own went upstream with the MAIL; upstream read %q", chunks)
	}
}

// TestPipelinedRcptsOutOfStep: go-smtp's server refuses recipients past its
// limit without asking the session, after they went upstream with the MAIL
// (and DATA, which the upstream then answers 354). The upstream must end up
// with exactly the recipients the client was told were accepted, whether
// the upstream accepted the extra ones or refused them, and whether the
// client goes on with DATA or RSET; nothing may be submitted on the
// upstream session that is waiting for a message.
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
		{"upstream refuses the extra ones, DATA", true, false, []string{"a@example.net", "b@example.net"}, true},
		{"upstream accepts the extra ones, RSET", false, true, []string{"e@example.net"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(s *Server) { s.maxRcpts, s.maxPipelined = 2, 4 })
			if tt.upRefusesCD {
				h.up.set(func(f *fakeUpstream) {
					f.refuseRcpt = map[string]*smtp.SMTPError{"c@example.net": refusedUpstream, "d@example.net": refusedUpstream}
				})
			}
			tc := h.loggedInTranscript()
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
	tc := h.loggedInTranscript()
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

// directSession returns a logged-in session of h's front with its
// upstream session, driven by the test instead of go-smtp: its client
// connection is one end of a pipe nobody reads.
// refused returns the result of a session's Data as a refusal: nil for
// the upstream's 250, which Data returns for go-smtp to write.
func refused(err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code == 250 {
		return nil
	}
	return err
}

func directSession(t *testing.T, h *harness) (*session, *clientConn, *upstream) {
	t.Helper()
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
	t.Cleanup(func() { client.Close() })
	cc := newClientConn(ctx, &proxy.Conn{Conn: server}, server, h.front.opts.Log, 0, 0)
	s := newSession(h.front, cc)
	s.acct, s.release = acct, func() {}
	s.setUpstream(up)
	return s, cc, up
}

// TestRcptOutOfStepRealigns drives a session directly: go-smtp passes it a
// recipient other than the next one that went upstream with the MAIL (as
// it would after refusing one itself). The upstream transaction is
// restarted, on a new upstream session when a pipelined DATA already made
// the upstream wait for a message, and holds only what the client was told.
func TestRcptOutOfStepRealigns(t *testing.T) {
	for _, tt := range []struct {
		data, redialFails bool
	}{{false, false}, {true, false}, {true, true}} {
		data := tt.data
		t.Run(fmt.Sprintf("DATA pipelined %v, redial fails %v", data, tt.redialFails), func(t *testing.T) {
			h := newHarness(t)
			s, cc, up := directSession(t, h)

			// go-smtp has just read the MAIL line; two RCPTs wait behind it.
			cc.noteLine([]byte("MAIL FROM:<billing@example.com>\r\n"))
			cc.pend = []byte("RCPT TO:<a@example.net>\r\nRCPT TO:<b@example.net>\r\n")
			want := []string{"RCPT TO:<a@example.net>\r\n", "RCPT TO:<b@example.net>\r\n"}
			if data {
				cc.pend = append(cc.pend, "DATA\r\n"...)
				want = append(want, "DATA\r\n")
			}
			if err := s.Mail("billing@example.com", nil); err != nil {
				t.Fatal(err)
			}
			if got := up.conn.ahead; !slices.Equal(got, want) {
				t.Fatalf("sent ahead %q, want %q", got, want)
			}
			if tt.redialFails {
				h.tokens.setErr(proxy.ErrUpstreamUnavailable)
				err := s.Rcpt("b@example.net", nil)
				var se *smtp.SMTPError
				if !errors.As(err, &se) || se.Code != 451 {
					t.Fatalf("RCPT when the new upstream session fails: %v, want 451", err)
				}
				if err := refused(s.Data(strings.NewReader(pipeBody))); err == nil {
					t.Fatal("DATA accepted after the transaction was lost")
				}
				s.Logout()
				if msgs := h.up.messages(); len(msgs) != 0 {
					t.Fatalf("upstream got %+v, want nothing", msgs)
				}
				return
			}
			if err := s.Rcpt("b@example.net", nil); err != nil {
				t.Fatalf("%v\n%s", err, h.log)
			}
			if (s.up != up) != data {
				t.Fatalf("upstream session replaced: %v, want %v", s.up != up, data)
			}
			if err := refused(s.Data(strings.NewReader(pipeBody))); err != nil {
				t.Fatal(err)
			}
			s.Logout()
			msgs := h.up.messages()
			if len(msgs) != 1 || !slices.Equal(msgs[0].to, []string{"b@example.net"}) || string(msgs[0].data) != pipeBody {
				t.Fatalf("upstream got %+v, want one message to b only", msgs)
			}
			if !strings.Contains(h.log.String(), "restarting the upstream transaction") {
				t.Fatalf("no restart logged:\n%s", h.log)
			}
		})
	}
}

// TestNoPipeliningUnlessOffered: an upstream that does not offer
// PIPELINING gets one command at a time (RFC 2920 §3.1).
func TestNoPipeliningUnlessOffered(t *testing.T) {
	h := newHarness(t)
	s, cc, up := directSession(t, h)
	if !up.pipelining {
		t.Fatal("the fake upstream offers PIPELINING, but the session did not see it")
	}
	up.pipelining = false
	cc.noteLine([]byte("MAIL FROM:<billing@example.com>\r\n"))
	cc.pend = []byte("RCPT TO:<a@example.net>\r\nDATA\r\n")
	if err := s.Mail("billing@example.com", nil); err != nil {
		t.Fatal(err)
	}
	if len(up.conn.ahead) != 0 {
		t.Fatalf("sent ahead %q to an upstream without PIPELINING", up.conn.ahead)
	}
	for _, err := range []error{s.Rcpt("a@example.net", nil), refused(s.Data(strings.NewReader(pipeBody)))} {
		if err != nil {
			t.Fatal(err)
		}
	}
	s.Logout()
	if msgs := h.up.messages(); len(msgs) != 1 || !slices.Equal(msgs[0].to, []string{"a@example.net"}) {
		t.Fatalf("upstream got %+v", msgs)
	}
}

// TestPipelinedDATAWithNoRecipientLeft: every pipelined recipient is
// refused upstream, so go-smtp's server refuses the DATA itself; the DATA
// that went upstream was refused there too, and the session goes on in
// step on the same upstream session.
func TestPipelinedDATAWithNoRecipientLeft(t *testing.T) {
	h := newHarness(t)
	refused := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 10}, Message: "Recipient not found"}
	h.up.set(func(f *fakeUpstream) {
		f.refuseRcpt = map[string]*smtp.SMTPError{"x@example.net": refused, "y@example.net": refused}
	})
	tc := h.loggedInTranscript()
	tc.write("MAIL FROM:<billing@example.com>\r\nRCPT TO:<x@example.net>\r\nRCPT TO:<y@example.net>\r\nDATA\r\n")
	for _, want := range []string{"250 ", "550 ", "550 ", "502 "} {
		tc.expect(want)
	}
	tc.write("RSET\r\nMAIL FROM:<billing@example.com>\r\nRCPT TO:<z@example.net>\r\nDATA\r\n")
	for _, want := range []string{"250 ", "250 ", "250 ", "354 "} {
		tc.expect(want)
	}
	tc.write(pipeBody + ".\r\nQUIT\r\n")
	tc.expect("250 ")
	tc.expect("221 ")
	msgs := h.up.messages()
	if len(msgs) != 1 || !slices.Equal(msgs[0].to, []string{"z@example.net"}) {
		t.Fatalf("upstream got %+v", msgs)
	}
	if l := h.log.String(); strings.Contains(l, "dropping the upstream session") || strings.Count(l, "new upstream session") > 1 {
		t.Fatalf("the upstream session was replaced:\n%s", l)
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

// recConn records each write; reads end at once.
type recConn struct {
	net.Conn
	writes []string
}

func (r *recConn) Write(b []byte) (int, error) {
	r.writes = append(r.writes, string(b))
	return len(b), nil
}
func (r *recConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (r *recConn) SetReadDeadline(time.Time) error  { return nil }
func (r *recConn) SetWriteDeadline(time.Time) error { return nil }

// TestCorkedReplies: replies to pipelined MAIL and RCPT wait for the next
// reply that is not held (here the 354), and go out with it in one write;
// held replies go out before clientConn waits for the client; replies
// that end the session, or answer anything else, are never held.
func TestCorkedReplies(t *testing.T) {
	type step struct {
		read  bool   // go-smtp reads a line (from pend, else the connection)
		reply string // go-smtp writes this reply
	}
	for _, tt := range []struct {
		name   string
		pend   string
		steps  []step
		writes []string
	}{
		{"pipelined envelope", "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\n",
			[]step{{true, "250 mail\r\n"}, {true, "250 rcpt\r\n"}, {true, "550 rcpt\r\n"}, {true, "354 go\r\n"}},
			[]string{"250 mail\r\n250 rcpt\r\n550 rcpt\r\n354 go\r\n"}},
		{"not pipelined", "MAIL FROM:<a@b>\r\n",
			[]step{{true, "250 mail\r\n"}},
			[]string{"250 mail\r\n"}},
		{"held replies go out before a read from the client", "MAIL FROM:<a@b>\r\nRCPT TO:<c",
			[]step{{true, "250 mail\r\n"}, {true, ""}, {true, ""}},
			[]string{"250 mail\r\n"}},
		{"RSET and a closing reply", "RSET\r\nMAIL FROM:<a@b>\r\nQUIT\r\n",
			[]step{{true, "250 reset\r\n"}, {true, "421 bye\r\n"}},
			[]string{"250 reset\r\n421 bye\r\n"}},
		{"NOOP is answered at once", "NOOP\r\nNOOP\r\n",
			[]step{{true, "250 noop\r\n"}, {true, "250 noop\r\n"}},
			[]string{"250 noop\r\n", "250 noop\r\n"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rc := &recConn{}
			cc := newClientConn(context.Background(), &proxy.Conn{Conn: rc}, rc, slog.New(slog.DiscardHandler), 0, 0)
			cc.pend = []byte(tt.pend)
			buf := make([]byte, 4096)
			for _, st := range tt.steps {
				if st.read {
					cc.Read(buf)
				}
				if st.reply != "" {
					cc.Write([]byte(st.reply))
				}
			}
			if !slices.Equal(rc.writes, tt.writes) {
				t.Fatalf("writes %q, want %q", rc.writes, tt.writes)
			}
		})
	}
}

// TestPipelinedTransactionsKeepTheirWord sends random pipelined
// transactions: recipients the upstream accepts or refuses, RCPT lines in
// forms go-smtp accepts but the pipelining leaves to be relayed in turn,
// lines go-smtp refuses, more recipients than go-smtp's limit, groups split
// over two writes, RSET instead of DATA. Whatever happens, every message
// the upstream accepted must have exactly the recipients the client got a
// 250 for, in order, and only messages the client got a 250 for may exist.
func TestPipelinedTransactionsKeepTheirWord(t *testing.T) {
	refused := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 10}, Message: "Recipient not found"}
	h := newHarness(t, func(s *Server) { s.maxRcpts, s.maxPipelined = 3, 6 })
	h.up.set(func(f *fakeUpstream) {
		f.refuseRcpt = map[string]*smtp.SMTPError{"r1@example.net": refused, "r2@example.net": refused}
	})
	tc := h.loggedInTranscript()
	rng := newRand(2920)
	type rcptForm struct {
		line string // %s: the address
		ok   bool   // go-smtp passes the address on
	}
	forms := []rcptForm{
		{"RCPT TO:<%s>\r\n", true}, {"rcpt to:<%s>\r\n", true}, {"RCPT TO: <%s>\r\n", true},
		{"RCPT TO:<%s> \r\n", true}, {"RCPT TO:%s\r\n", true}, {"RCPT TO:<%s\r\n", false},
		{"RCPT FROM:<%s>\r\n", false}, {"RCPT TO:<%s> X-UNKNOWN\r\n", false},
	}
	addrs := []string{"a@example.net", "b@example.net", "c@example.net", "r1@example.net", "r2@example.net"}
	var want [][]string // recipients of each message the client was told was accepted
	for tx := range 300 {
		k := rng.IntN(7)
		group := "MAIL FROM:<billing@example.com>\r\n"
		var sent []string // addresses go-smtp passes on, in order
		for range k {
			f := forms[rng.IntN(len(forms))]
			if rng.IntN(3) > 0 {
				f = forms[0]
			}
			a := addrs[rng.IntN(len(addrs))]
			group += fmt.Sprintf(f.line, a)
			if f.ok {
				sent = append(sent, a)
			} else {
				sent = append(sent, "")
			}
		}
		rset := rng.IntN(8) == 0
		if rset {
			group += "RSET\r\n"
		} else {
			group += "DATA\r\n"
		}
		if cut := rng.IntN(len(group) + 20); cut < len(group) {
			tc.write(group[:cut])
			time.Sleep(time.Millisecond)
			tc.write(group[cut:])
		} else {
			tc.write(group)
		}
		tc.expect("250 ") // MAIL
		var accepted []string
		for i, a := range sent {
			r, err := tc.reply()
			if err != nil {
				t.Fatalf("transaction %d: %v", tx, err)
			}
			switch {
			case strings.HasPrefix(r, "250 "):
				if a == "" {
					t.Fatalf("transaction %d: RCPT %d in a refused form got %q", tx, i, r)
				}
				accepted = append(accepted, a)
			case a != "" && len(accepted) < 3 && a[0] != 'r':
				t.Fatalf("transaction %d: RCPT %d (%s) refused: %q", tx, i, a, r)
			}
		}
		end, err := tc.reply()
		if err != nil {
			t.Fatalf("transaction %d: %v", tx, err)
		}
		switch {
		case rset:
			if !strings.HasPrefix(end, "250 ") {
				t.Fatalf("transaction %d: RSET got %q", tx, end)
			}
			continue
		case len(accepted) == 0:
			if !strings.HasPrefix(end, "502 ") {
				t.Fatalf("transaction %d: DATA without recipients got %q", tx, end)
			}
			tc.cmd("RSET", "250 ")
			continue
		case !strings.HasPrefix(end, "354 "):
			t.Fatalf("transaction %d: DATA got %q", tx, end)
		}
		tc.write(fmt.Sprintf("Subject: %d\r\n\r\nbody\r\n.\r\n", tx))
		if r := tc.expect("250 "); r == "" {
			t.Fatalf("transaction %d: no reply to the message", tx)
		}
		want = append(want, accepted)
	}
	tc.cmd("QUIT", "221 ")
	msgs := h.up.messages()
	if len(msgs) != len(want) {
		t.Fatalf("upstream accepted %d messages, the client was told %d", len(msgs), len(want))
	}
	for i, m := range msgs {
		if !slices.Equal(m.to, want[i]) {
			t.Fatalf("message %d went to %v, the client was told %v", i, m.to, want[i])
		}
	}
	if !strings.Contains(h.log.String(), "restarting the upstream transaction") {
		t.Fatal("no transaction went out of step: the test does not reach realign")
	}
}

// dataConn returns data on its first read, then EOF.
type dataConn struct {
	recConn
	data []byte
}

func (d *dataConn) Read(b []byte) (int, error) {
	if len(d.data) == 0 {
		return 0, io.EOF
	}
	n := copy(b, d.data)
	d.data = d.data[n:]
	return n, nil
}

// TestOneLinePerRead: go-smtp gets one line per read and what the client
// sent behind it waits in clientConn in a buffer of its own size, not in a
// pooled 64 KiB one (a client pipelining behind a slowed-down AUTH must
// not pin one per connection).
func TestOneLinePerRead(t *testing.T) {
	dc := &dataConn{data: []byte("AUTH PLAIN AGEAYg==\r\nNOOP\r\nNOOP\r\nQUI")}
	cc := newClientConn(context.Background(), &proxy.Conn{Conn: dc}, dc, slog.New(slog.DiscardHandler), 0, 0)
	buf := make([]byte, 4096)
	var got []string
	for {
		n, err := cc.Read(buf)
		if n > 0 {
			got = append(got, string(buf[:n]))
		}
		if err != nil {
			break
		}
		if len(got) == 1 && (cc.pendBuf != nil || cap(cc.pend) > 64) {
			t.Fatalf("behind the first line: pooled buffer %v, pend capacity %d", cc.pendBuf != nil, cap(cc.pend))
		}
	}
	if want := []string{"AUTH PLAIN AGEAYg==\r\n", "NOOP\r\n", "NOOP\r\n", "QUI"}; !slices.Equal(got, want) {
		t.Fatalf("reads %q, want %q", got, want)
	}
}

// BenchmarkPipelinedSubmit submits 4 KiB messages with MAIL, two RCPTs and
// DATA pipelined by the client, through the front to the fake upstream:
// "serial" relays the envelope one command at a time (nothing pipelined
// upstream), the baseline for "pipelined" in the same run.
func BenchmarkPipelinedSubmit(b *testing.B) {
	for _, mode := range []struct {
		name string
		max  int
	}{{"serial", 0}, {"pipelined", maxRecipients}} {
		b.Run(mode.name, func(b *testing.B) {
			h := newHarness(b, func(s *Server) { s.maxPipelined = mode.max })
			h.up.set(func(f *fakeUpstream) { f.discardData = true })
			tc := h.loggedInTranscript()
			body := "Subject: bench\r\n\r\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n", 62) + ".\r\n"
			envelope := "MAIL FROM:<billing@example.com>\r\nRCPT TO:<a@example.net>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				tc.write(envelope)
				for _, want := range []string{"250 ", "250 ", "250 ", "354 "} {
					tc.expect(want)
				}
				tc.write(body)
				tc.expect("250 ")
			}
			b.StopTimer()
			tc.cmd("QUIT", "221 ")
		})
	}
}
