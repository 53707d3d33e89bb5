package check

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// jsonChallenge is the XOAUTH2 error challenge (base64 of
// {"status":"401","schemes":"bearer","scope":"https://outlook.office.com/"}).
var jsonChallenge = base64.StdEncoding.EncodeToString([]byte(`{"status":"401","schemes":"bearer","scope":"https://outlook.office.com/"}`))

// xoauth2User returns the user= of a base64 XOAUTH2 initial response.
func xoauth2User(b64 string) (user string, ok bool) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return "", false
	}
	for _, f := range strings.Split(string(raw), "\x01") {
		if u, found := strings.CutPrefix(f, "user="); found {
			user = u
		}
		if t, found := strings.CutPrefix(f, "auth=Bearer "); found && t != "" {
			ok = true
		}
	}
	return user, ok && user != ""
}

// scriptServer accepts connections on 127.0.0.1 (with TLS when tlsConf is
// set) and runs serve on each until the test ends.
type scriptServer struct {
	ln net.Listener
	wg sync.WaitGroup

	mu    sync.Mutex
	users []string // XOAUTH2 user= values seen
}

func newScriptServer(t *testing.T, tlsConf *tls.Config, serve func(s *scriptServer, c net.Conn, r *bufio.Reader)) *scriptServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	s := &scriptServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				serve(s, c, bufio.NewReader(c))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *scriptServer) addr() string { return s.ln.Addr().String() }

func (s *scriptServer) sawUser(u string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users = append(s.users, u)
}

func (s *scriptServer) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.users...)
}

// imapScript is how the fake IMAP server behaves, with Exchange's texts.
type imapScript struct {
	challenge  bool   // answer the login with the JSON error challenge first
	authStatus string // tagged answer to AUTHENTICATE after the tag; "" is OK
	authBye    string // untagged BYE text instead of a tagged answer
	listStatus string // tagged answer to LIST after the tag; "" is OK
	exists     int
	startTLS   *tls.Config // plain listener; STARTTLS upgrades with this
}

// fakeIMAP serves an IMAP upstream that speaks just enough for the check.
func fakeIMAP(t *testing.T, tlsConf *tls.Config, sc imapScript) *scriptServer {
	if sc.startTLS != nil {
		tlsConf = nil
	}
	return newScriptServer(t, tlsConf, func(s *scriptServer, c net.Conn, r *bufio.Reader) {
		say := func(format string, args ...any) { fmt.Fprintf(c, format+"\r\n", args...) }
		say("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] fake Exchange ready.")
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			f := strings.Fields(line)
			if len(f) < 2 {
				say("* BAD empty command")
				continue
			}
			tag, cmd := f[0], strings.ToUpper(f[1])
			switch {
			case cmd == "AUTHENTICATE" && (len(f) == 3 || len(f) == 4):
				ir := ""
				if len(f) == 4 {
					ir = f[3]
				} else { // the two-step form: the response after "+ "
					say("+ ")
					if ir, err = r.ReadString('\n'); err != nil {
						return
					}
				}
				if u, ok := xoauth2User(strings.TrimSpace(ir)); ok {
					s.sawUser(u)
				}
				if sc.challenge {
					say("+ %s", jsonChallenge)
					if empty, err := r.ReadString('\n'); err != nil || strings.TrimSpace(empty) != "" {
						say("%s BAD the error challenge must get an empty answer", tag)
						return
					}
				}
				if sc.authBye != "" {
					say("* BYE %s", sc.authBye)
					return
				}
				say("%s %s", tag, or(sc.authStatus, "OK AUTHENTICATE completed."))
			case cmd == "STARTTLS" && sc.startTLS != nil:
				say("%s OK Begin TLS negotiation now.", tag)
				if c, r = upgradeServer(c, sc.startTLS); c == nil {
					return
				}
			case cmd == "CAPABILITY":
				say("* CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2")
				say("%s OK CAPABILITY completed.", tag)
			case cmd == "LIST":
				if sc.listStatus == "" {
					say(`* LIST (\Noselect \HasChildren) "/" ""`)
				}
				say("%s %s", tag, or(sc.listStatus, "OK LIST completed."))
			case cmd == "SELECT":
				say("* %d EXISTS", sc.exists)
				say("* OK [UIDVALIDITY 14] UIDVALIDITY value")
				say("%s OK [READ-WRITE] SELECT completed.", tag)
			case cmd == "LOGOUT":
				say("* BYE Microsoft Exchange Server IMAP4 server signing off.")
				say("%s OK LOGOUT completed.", tag)
				return
			default:
				say("%s BAD Command Error. 12", tag)
			}
		}
	})
}

// pop3Script is how the fake POP3 server behaves.
type pop3Script struct {
	challenge bool        // send the JSON error challenge after the response
	authReply string      // answer to the XOAUTH2 response; "" is +OK
	startTLS  *tls.Config // plain listener; STLS upgrades with this
}

func fakePOP3(t *testing.T, tlsConf *tls.Config, sc pop3Script) *scriptServer {
	if sc.startTLS != nil {
		tlsConf = nil
	}
	return newScriptServer(t, tlsConf, func(s *scriptServer, c net.Conn, r *bufio.Reader) {
		say := func(format string, args ...any) { fmt.Fprintf(c, format+"\r\n", args...) }
		say("+OK The Microsoft Exchange POP3 service is ready.")
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch cmd := strings.ToUpper(strings.TrimSpace(line)); cmd {
			case "AUTH XOAUTH2":
				say("+ ")
				resp, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if u, ok := xoauth2User(resp); ok {
					s.sawUser(u)
				}
				if sc.challenge {
					say("+ %s", jsonChallenge)
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
				}
				say("%s", or(sc.authReply, "+OK User successfully authenticated."))
			case "STLS":
				say("+OK Begin TLS negotiation.")
				if c, r = upgradeServer(c, sc.startTLS); c == nil {
					return
				}
			case "STAT":
				say("+OK 2 3218")
			case "QUIT":
				say("+OK Microsoft Exchange Server POP3 server signing off.")
				return
			default:
				say("-ERR Protocol error. 14")
			}
		}
	})
}

// smtpScript is how the fake SMTP server behaves: errors to answer with.
type smtpScript struct {
	challenge bool // send the JSON error challenge before authErr
	authErr   *smtp.SMTPError
	mailErr   *smtp.SMTPError
	dataErr   *smtp.SMTPError
}

// fakeSubmission is a go-smtp server with STARTTLS and XOAUTH2.
type fakeSubmission struct {
	sc   smtpScript
	addr string

	mu    sync.Mutex
	users []string
	msgs  []string // "from -> to: data"
}

func fakeSMTP(t *testing.T, tlsConf *tls.Config, sc smtpScript) *fakeSubmission {
	t.Helper()
	f := &fakeSubmission{sc: sc}
	srv := smtp.NewServer(f)
	srv.Domain = "fake.outlook.test"
	srv.TLSConfig = tlsConf
	srv.ErrorLog = discardLog{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return f
}

type discardLog struct{}

func (discardLog) Printf(string, ...any) {}
func (discardLog) Println(...any)        {}

func (f *fakeSubmission) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &fakeSMTPSession{f: f}, nil
}

type fakeSMTPSession struct {
	f        *fakeSubmission
	from, to string
}

func (s *fakeSMTPSession) AuthMechanisms() []string { return []string{"XOAUTH2"} }

func (s *fakeSMTPSession) Auth(string) (sasl.Server, error) {
	step := 0
	return saslFunc(func(resp []byte) ([]byte, bool, error) {
		step++
		switch {
		case step == 1 && len(resp) == 0: // no initial response: ask for it
			return []byte{}, false, nil
		case s.f.sc.challenge && step <= 2:
			s.sawResponse(resp)
			raw, _ := base64.StdEncoding.DecodeString(jsonChallenge)
			return raw, false, nil
		}
		if !s.f.sc.challenge {
			s.sawResponse(resp)
		}
		if s.f.sc.authErr != nil {
			return nil, false, s.f.sc.authErr
		}
		return nil, true, nil
	}), nil
}

func (s *fakeSMTPSession) sawResponse(resp []byte) {
	if u, ok := xoauth2User(base64.StdEncoding.EncodeToString(resp)); ok {
		s.f.mu.Lock()
		s.f.users = append(s.f.users, u)
		s.f.mu.Unlock()
	}
}

type saslFunc func([]byte) ([]byte, bool, error)

func (f saslFunc) Next(resp []byte) ([]byte, bool, error) { return f(resp) }

func (s *fakeSMTPSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.f.sc.mailErr != nil {
		return s.f.sc.mailErr
	}
	s.from = from
	return nil
}

func (s *fakeSMTPSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = to
	return nil
}

func (s *fakeSMTPSession) Data(r io.Reader) error {
	b, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return err
	}
	if s.f.sc.dataErr != nil {
		return s.f.sc.dataErr
	}
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.f.msgs = append(s.f.msgs, s.from+" -> "+s.to+": "+string(b))
	return nil
}

func (s *fakeSMTPSession) Reset()        { s.from, s.to = "", "" }
func (s *fakeSMTPSession) Logout() error { return nil }

func (f *fakeSubmission) seen() (users, msgs []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.users...), append([]string(nil), f.msgs...)
}

// upgradeServer runs the server side of a TLS handshake on c; nil on failure.
func upgradeServer(c net.Conn, conf *tls.Config) (net.Conn, *bufio.Reader) {
	tc := tls.Server(c, conf)
	if err := tc.Handshake(); err != nil {
		return nil, nil
	}
	return tc, bufio.NewReader(tc)
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
