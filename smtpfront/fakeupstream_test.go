package smtpfront

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// fakeMsg is a message the fake upstream accepted.
type fakeMsg struct {
	from string
	to   []string
	data []byte
}

// dropPlan says where the fake upstream breaks a DATA transfer: after
// reading at bytes of the message (-1: never), or after accepting the whole
// message but before replying (deliverThenDrop).
type dropPlan struct {
	at              int64
	deliverThenDrop bool
}

var noDrop = dropPlan{at: -1}

// fakeUpstream is an in-process submission server like Exchange's: STARTTLS
// (AUTH only after it), AUTH XOAUTH2 validating the token and answering a
// bad one with the JSON error challenge, SIZE and SMTPUTF8, and injectable
// errors per command. It records accepted messages byte for byte and counts
// concurrent sessions.
type fakeUpstream struct {
	t    testing.TB
	addr string
	srv  *smtp.Server
	ln   net.Listener

	mu          sync.Mutex
	rejectToken map[string]bool            // tokens refused at AUTH
	authErr     *smtp.SMTPError            // final AUTH reply for a refused token (default 535 5.7.8)
	authFail    *smtp.SMTPError            // when set, AUTH fails with it even for a good token
	echoAuth    bool                       // AUTH fails with a reply that quotes the client's response
	mailErr     *smtp.SMTPError            // MAIL reply instead of 250
	rcptErr     *smtp.SMTPError            // RCPT reply instead of 250
	dataErr     *smtp.SMTPError            // final DATA reply instead of 250
	dataOK      *smtp.SMTPError            // final DATA reply of an accepted message (a 250 with a queue id); nil: go-smtp's
	nextDrop    func() dropPlan            // consulted at each DATA
	msgs        []fakeMsg                  // accepted messages
	users       []string                   // user= of successful AUTHs
	active      int                        // sessions open now
	maxActive   int                        // most sessions open at once
	conns       map[net.Conn]bool          // live connections
	dataStarted int                        // DATA transfers begun
	discardData bool                       // count messages but do not keep them (benchmarks)
	forgetAuth  bool                       // RSET and EHLO end the login (as some servers might)
	discarded   int                        // messages accepted and dropped
	refuseRcpt  map[string]*smtp.SMTPError // RCPT replies for these recipients
	wire        wireLog                    // what the upstream read, chunk by chunk (envelope commands only)
	dataRead    atomic.Int64               // message bytes read so far, over all messages
}

// countingReader counts what is read through it.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// wireLog keeps the chunks the fake upstream read that hold envelope
// commands, one per read (one TLS record), to see what came in one write.
type wireLog struct {
	mu     sync.Mutex
	chunks []string
}

func (w *wireLog) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("RCPT TO:")) || bytes.Contains(p, []byte("MAIL FROM:")) {
		w.mu.Lock()
		if len(w.chunks) < 10000 {
			w.chunks = append(w.chunks, string(p[:min(len(p), 16<<10)]))
		}
		w.mu.Unlock()
	}
	return len(p), nil
}

func (w *wireLog) list() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.chunks...)
}

func newFakeUpstream(t testing.TB, tlsConfig *tls.Config, mode upstreamMode, recordWire bool) *fakeUpstream {
	t.Helper()
	f := &fakeUpstream{t: t, rejectToken: map[string]bool{}, conns: map[net.Conn]bool{}}
	f.srv = smtp.NewServer(smtp.BackendFunc(f.newSession))
	f.srv.Domain = "upstream.test"
	if mode != upstreamNoTLS {
		f.srv.TLSConfig = tlsConfig
	}
	f.srv.MaxMessageBytes = 30 << 20
	f.srv.EnableSMTPUTF8 = true
	f.srv.ErrorLog = log.New(io.Discard, "", 0)
	if recordWire {
		f.srv.Debug = &f.wire
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	if mode == upstreamImplicit {
		ln = tls.NewListener(ln, tlsConfig)
	}
	f.ln = ln
	go f.srv.Serve(ln)
	t.Cleanup(func() { f.srv.Close() })
	return f
}

func (f *fakeUpstream) set(fn func(f *fakeUpstream)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeUpstream) messages() []fakeMsg {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeMsg(nil), f.msgs...)
}

// dropAll closes every upstream connection, as an upstream does with idle
// sessions.
func (f *fakeUpstream) dropAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		c.Close()
	}
}

func (f *fakeUpstream) newSession(c *smtp.Conn) (smtp.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.active++
	f.maxActive = max(f.maxActive, f.active)
	raw := c.Conn()
	if tc, ok := raw.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	f.conns[raw] = true
	return &fakeSession{f: f, conn: raw, tls: isTLS(c)}, nil
}

func isTLS(c *smtp.Conn) bool {
	_, ok := c.TLSConnectionState()
	return ok
}

type fakeSession struct {
	f      *fakeUpstream
	conn   net.Conn
	tls    bool
	authed bool
	from   string
	to     []string
	closed bool
}

func (s *fakeSession) AuthMechanisms() []string {
	return []string{"LOGIN", "XOAUTH2"}
}

func (s *fakeSession) Auth(mech string) (sasl.Server, error) {
	if mech != "XOAUTH2" {
		// Like Microsoft: a password must never arrive here.
		return nil, &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 139}, Message: "Authentication unsuccessful, basic authentication is disabled."}
	}
	return &fakeXOAuth2{s: s}, nil
}

// fakeXOAuth2 is the server side of XOAUTH2: a bad token gets the JSON
// challenge; the client's (empty) answer gets the final failure.
type fakeXOAuth2 struct {
	s      *fakeSession
	failed bool
}

func (x *fakeXOAuth2) Next(resp []byte) ([]byte, bool, error) {
	f := x.s.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if x.failed {
		if len(resp) != 0 {
			return nil, true, &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Invalid base64 data in continued response"}
		}
		if f.authErr != nil {
			return nil, true, f.authErr
		}
		return nil, true, &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication failed"}
	}
	if resp == nil {
		return []byte{}, false, nil
	}
	user, token, ok := parseXOAuth2(resp)
	if f.echoAuth {
		return nil, true, &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Bad response " + base64.StdEncoding.EncodeToString(resp)}
	}
	if f.authFail != nil {
		return nil, true, f.authFail
	}
	if !ok || !x.s.tls || f.rejectToken[token] || !strings.HasPrefix(token, "tok-"+user+"-") {
		x.failed = true
		ch, _ := json.Marshal(map[string]string{"status": "401", "schemes": "bearer", "scope": "https://outlook.office.com/SMTP.Send"})
		return ch, false, nil
	}
	f.users = append(f.users, user)
	x.s.authed = true
	return nil, true, nil
}

func parseXOAuth2(resp []byte) (user, token string, ok bool) {
	parts := strings.Split(string(resp), "\x01")
	if len(parts) != 4 || parts[2] != "" || parts[3] != "" {
		return "", "", false
	}
	user, ok1 := strings.CutPrefix(parts[0], "user=")
	token, ok2 := strings.CutPrefix(parts[1], "auth=Bearer ")
	return user, token, ok1 && ok2
}

func (s *fakeSession) Mail(from string, _ *smtp.MailOptions) error {
	if !s.authed {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 57}, Message: "Client not authenticated to send mail"}
	}
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if s.f.mailErr != nil {
		return s.f.mailErr
	}
	s.from, s.to = from, nil
	return nil
}

func (s *fakeSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if s.f.rcptErr != nil {
		return s.f.rcptErr
	}
	if e := s.f.refuseRcpt[to]; e != nil {
		return e
	}
	s.to = append(s.to, to)
	return nil
}

func (s *fakeSession) Data(r io.Reader) error {
	s.f.mu.Lock()
	s.f.dataStarted++
	plan := noDrop
	if s.f.nextDrop != nil {
		plan = s.f.nextDrop()
	}
	s.f.mu.Unlock()
	if s.f.discardData {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return err
		}
		s.f.mu.Lock()
		s.f.discarded++
		s.f.mu.Unlock()
		return nil
	}
	var buf bytes.Buffer
	if plan.at >= 0 && !plan.deliverThenDrop {
		io.CopyN(&buf, r, plan.at)
		s.conn.Close()
		return io.ErrUnexpectedEOF
	}
	if _, err := io.Copy(&buf, countingReader{r, &s.f.dataRead}); err != nil {
		return err
	}
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if s.f.dataErr != nil {
		return s.f.dataErr
	}
	s.f.msgs = append(s.f.msgs, fakeMsg{from: s.from, to: s.to, data: buf.Bytes()})
	if plan.deliverThenDrop {
		s.conn.Close()
	}
	if s.f.dataOK != nil {
		return s.f.dataOK // go-smtp's server writes a *SMTPError as it is, 250 too
	}
	return nil
}

func (s *fakeSession) Reset() {
	s.from, s.to = "", nil
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if s.f.forgetAuth {
		s.authed = false
	}
}

func (s *fakeSession) Logout() error {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if !s.closed {
		s.closed = true
		s.f.active--
		delete(s.f.conns, s.conn)
	}
	return nil
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
