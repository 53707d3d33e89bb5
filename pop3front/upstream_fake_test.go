package pop3front

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/proxy"
)

// fault makes the fake upstream misbehave in one way.
type fault int

const (
	faultNone             fault = iota
	faultCloseMidGreeting       // half a greeting, then close
	faultCloseAfterAuth         // close right after reading AUTH XOAUTH2
	faultRejectAlways           // -ERR to every XOAUTH2 response, no challenge (Exchange)
	faultTempFail               // -ERR [SYS/TEMP] to the XOAUTH2 response
	faultNoXOAUTH2              // -ERR to AUTH XOAUTH2 itself
	faultBadGreeting            // -ERR greeting
)

// fakeMsg is one message of the fake maildrop.
type fakeMsg struct {
	uid  string
	data []byte // CRLF lines, not dot-stuffed
}

// fakeUpstream is a small POP3 server over TLS on loopback: AUTH XOAUTH2 in
// the two-line form with a JSON error challenge for a bad token, then STAT,
// LIST, UIDL, RETR, TOP, DELE, NOOP, RSET and QUIT over one in-memory
// maildrop shared by all connections.
type fakeUpstream struct {
	t         testing.TB
	ln        net.Listener
	starttls  bool        // plaintext greeting and STLS instead of implicit TLS
	serverTLS *tls.Config // the server's certificate
	clientTLS *tls.Config // trusts the test CA; for the dialer

	mu             sync.Mutex
	tokens         map[string]string // valid access token → the user= it is good for
	drop           []*fakeMsg
	fault          fault
	conns          int      // connections accepted
	auths          int      // XOAUTH2 responses received
	afterChallenge []string // what the client sent after each error challenge
	wg             sync.WaitGroup
}

// fakeMaxLine bounds the fake's line reader (an XOAUTH2 line is long).
const fakeMaxLine = 16 << 10

func newFakeUpstream(t testing.TB, starttls bool) *fakeUpstream {
	t.Helper()
	ca := testkit.NewCA(t)
	serverTLS, clientTLS := ca.ServerConfig(t), ca.ClientConfig("localhost")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &fakeUpstream{
		t: t, ln: ln, starttls: starttls, serverTLS: serverTLS, clientTLS: clientTLS,
		tokens: map[string]string{},
	}
	u.wg.Add(1)
	go u.serve()
	t.Cleanup(func() {
		ln.Close()
		u.wg.Wait()
	})
	return u
}

// dialer returns a proxy.Dialer for the fake.
func (u *fakeUpstream) dialer() *proxy.Dialer {
	mode := proxy.TLSImplicit
	if u.starttls {
		mode = proxy.TLSStartTLS
	}
	return &proxy.Dialer{
		Addr: u.ln.Addr().String(), Mode: mode, TLS: u.clientTLS,
		DialTimeout: 5 * time.Second, HandshakeTimeout: 5 * time.Second,
	}
}

func (u *fakeUpstream) setFault(f fault) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.fault = f
}

func (u *fakeUpstream) allow(token, user string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.tokens[token] = user
}

func (u *fakeUpstream) setDrop(msgs ...*fakeMsg) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.drop = msgs
}

// uids returns the uids left in the maildrop.
func (u *fakeUpstream) uids() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for _, m := range u.drop {
		out = append(out, m.uid)
	}
	return out
}

// stats returns the connection and XOAUTH2 counts and the lines that
// followed error challenges.
func (u *fakeUpstream) stats() (conns, auths int, afterChallenge []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.conns, u.auths, append([]string(nil), u.afterChallenge...)
}

func (u *fakeUpstream) serve() {
	defer u.wg.Done()
	for {
		c, err := u.ln.Accept()
		if err != nil {
			return
		}
		u.mu.Lock()
		u.conns++
		u.mu.Unlock()
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			defer c.Close()
			c.SetDeadline(time.Now().Add(time.Minute))
			u.session(c)
		}()
	}
}

// fakeConn is one connection of the fake upstream.
type fakeConn struct {
	u       *fakeUpstream
	c       net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	deleted map[int]bool
}

func (f *fakeConn) reply(lines ...string) bool {
	for _, l := range lines {
		f.w.WriteString(l)
		f.w.WriteString("\r\n")
	}
	return f.w.Flush() == nil
}

func (f *fakeConn) readLine() (string, bool) {
	line, err := readLine(f.r)
	return string(line), err == nil
}

func (u *fakeUpstream) session(c net.Conn) {
	u.mu.Lock()
	flt := u.fault
	u.mu.Unlock()
	if !u.starttls {
		c = tls.Server(c, u.serverTLS)
	}
	f := &fakeConn{u: u, c: c, r: bufio.NewReaderSize(c, fakeMaxLine), w: bufio.NewWriter(c), deleted: map[int]bool{}}
	switch flt {
	case faultCloseMidGreeting:
		f.w.WriteString("+OK Dove")
		f.w.Flush()
		return
	case faultBadGreeting:
		f.reply("-ERR [SYS/TEMP] Too busy")
		return
	}
	if !f.reply("+OK fake POP3 ready") {
		return
	}
	if !f.authorize(flt) {
		return
	}
	f.transaction()
}

// authorize runs the AUTHORIZATION state; true when logged in.
func (f *fakeConn) authorize(flt fault) bool {
	for {
		line, ok := f.readLine()
		if !ok {
			return false
		}
		switch strings.ToUpper(line) {
		case "CAPA":
			caps := []string{"+OK", "SASL XOAUTH2", "TOP", "UIDL", "RESP-CODES"}
			if f.u.starttls {
				caps = append(caps, "STLS")
			}
			f.reply(append(caps, ".")...)
		case "STLS":
			if !f.u.starttls {
				f.reply("-ERR already secure")
				continue
			}
			f.reply("+OK Begin TLS negotiation")
			f.c = tls.Server(f.c, f.u.serverTLS)
			f.r = bufio.NewReaderSize(f.c, fakeMaxLine)
			f.w = bufio.NewWriter(f.c)
		case "AUTH XOAUTH2":
			switch flt {
			case faultCloseAfterAuth:
				return false
			case faultNoXOAUTH2:
				f.reply("-ERR Unsupported authentication mechanism.")
				continue
			}
			if f.xoauth2(flt) {
				return true
			}
		case "QUIT":
			f.reply("+OK bye")
			return false
		default:
			f.reply("-ERR [AUTH] not logged in")
		}
	}
}

// xoauth2 runs the two-line XOAUTH2 exchange after AUTH XOAUTH2.
func (f *fakeConn) xoauth2(flt fault) bool {
	if !f.reply("+ ") {
		return false
	}
	line, ok := f.readLine()
	if !ok {
		return false
	}
	u := f.u
	u.mu.Lock()
	u.auths++
	user, token := parseXOAUTH2(line)
	want, valid := u.tokens[token]
	u.mu.Unlock()
	switch {
	case flt == faultRejectAlways:
		f.reply("-ERR Authentication failure: unknown user name or bad password.")
		return false
	case flt == faultTempFail:
		f.reply("-ERR [SYS/TEMP] Temporary authentication failure.")
		return false
	case valid && want == user:
		f.reply("+OK Logged in.")
		return true
	}
	ch := base64.StdEncoding.EncodeToString([]byte(`{"status":"401","schemes":"bearer","scope":"pop"}`))
	f.reply("+ " + ch)
	resp, ok := f.readLine()
	if !ok {
		return false
	}
	u.mu.Lock()
	u.afterChallenge = append(u.afterChallenge, resp)
	u.mu.Unlock()
	if resp != "" {
		f.reply("-ERR [AUTH] Invalid base64 data in continued response")
		return false
	}
	f.reply("-ERR [AUTH] Authentication failed.")
	return false
}

// parseXOAUTH2 returns user= and the bearer token of a base64 XOAUTH2
// initial response.
func parseXOAUTH2(b64 string) (user, token string) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", ""
	}
	for _, kv := range strings.Split(string(raw), "\x01") {
		if v, ok := strings.CutPrefix(kv, "user="); ok {
			user = v
		}
		if v, ok := strings.CutPrefix(kv, "auth=Bearer "); ok {
			token = v
		}
	}
	return user, token
}

// transaction runs the TRANSACTION state and, on QUIT, the UPDATE state.
func (f *fakeConn) transaction() {
	for {
		line, ok := f.readLine()
		if !ok {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "QUIT":
			f.update()
			f.reply("+OK bye")
			return
		case "NOOP":
			f.reply("+OK")
		case "RSET":
			clear(f.deleted)
			f.reply("+OK")
		default:
			f.message(strings.ToUpper(verb), arg)
		}
	}
}

// update removes the deleted messages (RFC 1939 §6).
func (f *fakeConn) update() {
	f.u.mu.Lock()
	defer f.u.mu.Unlock()
	var keep []*fakeMsg
	for i, m := range f.u.drop {
		if !f.deleted[i+1] {
			keep = append(keep, m)
		}
	}
	f.u.drop = keep
}

// message runs STAT, LIST, UIDL, RETR, TOP and DELE.
func (f *fakeConn) message(verb, arg string) {
	f.u.mu.Lock()
	drop := append([]*fakeMsg(nil), f.u.drop...)
	f.u.mu.Unlock()
	args := strings.Fields(arg)
	n := 0
	if len(args) > 0 {
		var err error
		if n, err = strconv.Atoi(args[0]); err != nil || n < 1 || n > len(drop) || f.deleted[n] {
			f.reply("-ERR no such message")
			return
		}
	}
	switch verb {
	case "STAT":
		count, size := 0, 0
		for i, m := range drop {
			if !f.deleted[i+1] {
				count, size = count+1, size+len(m.data)
			}
		}
		f.reply(fmt.Sprintf("+OK %d %d", count, size))
	case "LIST", "UIDL":
		f.listing(verb, n, drop)
	case "RETR":
		if n == 0 {
			f.reply("-ERR message number required")
			return
		}
		f.w.WriteString(fmt.Sprintf("+OK %d octets\r\n", len(drop[n-1].data)))
		f.w.Write(dotStuff(drop[n-1].data))
		f.reply(".")
	case "DELE":
		if n == 0 {
			f.reply("-ERR message number required")
			return
		}
		f.deleted[n] = true
		f.reply(fmt.Sprintf("+OK message %d deleted", n))
	default:
		f.reply("-ERR unknown command")
	}
}

func (f *fakeConn) listing(verb string, n int, drop []*fakeMsg) {
	item := func(i int) string {
		if verb == "UIDL" {
			return fmt.Sprintf("%d %s", i, drop[i-1].uid)
		}
		return fmt.Sprintf("%d %d", i, len(drop[i-1].data))
	}
	if n > 0 {
		f.reply("+OK " + item(n))
		return
	}
	lines := []string{"+OK"}
	for i := range drop {
		if !f.deleted[i+1] {
			lines = append(lines, item(i+1))
		}
	}
	f.reply(append(lines, ".")...)
}

// dotStuff byte-stuffs lines that start with "." (RFC 1939 §3).
func dotStuff(data []byte) []byte {
	var b bytes.Buffer
	for line := range bytes.Lines(data) {
		if line[0] == '.' {
			b.WriteByte('.')
		}
		b.Write(line)
	}
	return b.Bytes()
}
