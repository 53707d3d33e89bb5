package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/passhash"
	"github.com/xoauthd/xoauthd/proxy"
)

// The hostile-client tests attack a running daemon over loopback the way a
// hostile local network would, while honest clients keep logging in (the
// prober), and check what the hardening guarantees in SECURITY.md say:
// bounded memory, bounded password hashing, a closed connection for every
// bound, unchanged stored tokens. Their scale is scaleOf's: CI runs a
// smaller one than -hostile.full.

// Bounds the tests assert. They are loose enough for a loaded 2-core CI
// machine and tight enough to catch an unbounded buffer.
const (
	// maxHeapGrowth bounds the heap growth of the whole test process
	// (daemon and clients) while a connection streams a 1 GiB line.
	maxHeapGrowth = 64 << 20
	// maxBytesBeforeClose bounds what a client could write before the
	// daemon closed the connection: the line bound, the bytes read while
	// lingering after the BYE and the kernel's socket buffers.
	maxBytesBeforeClose = 64 << 20
	// closeWithin bounds how long an attacked connection stays open after
	// the daemon should have closed it.
	closeWithin = 20 * time.Second
	// testPreAuth is the pre-auth timeout of the rigs that test it.
	testPreAuth = 3 * time.Second
)

// endlessCase is a connection that sends a prefix and then an endless line.
type endlessCase struct {
	name   string
	proto  string
	prefix string // sent before the endless bytes (may include a login)
	want   string // the daemon's last words contain this
	before string // the daemon said this before (a login went through)
}

func TestHostileEndlessLines(t *testing.T) {
	sc := scaleOf()
	r := newRigWith(t, rigOptions{})
	plain := b64("\x00" + aliceLogin + "\x00" + alicePass)
	cases := []endlessCase{
		{"IMAP before any command", "imap", "", "* BYE", ""},
		{"IMAP inside LOGIN", "imap", "a1 CAPABILITY\r\na2 LOGIN ", "* BYE", "a1 OK"},
		{"IMAP inside a quoted password", "imap", "a1 LOGIN erp-alice \"", "* BYE", ""},
		{"IMAP SASL response", "imap", "a1 AUTHENTICATE PLAIN\r\n", "* BYE", "\n+ "},
		{"POP3 before any command", "pop3", "", "-ERR", ""},
		{"POP3 inside PASS", "pop3", "USER erp-alice\r\nPASS ", "-ERR", "\r\n+OK\r\n"},
		{"SMTP before any command", "smtp", "", "500", ""},
		{"SMTP inside EHLO", "smtp", "EHLO ", "500", ""},
		{"SMTP inside AUTH", "smtp", "EHLO x\r\nAUTH PLAIN ", "500", "\n250 "},
		{"SMTP DATA after login", "smtp", "EHLO x\r\nAUTH PLAIN " + plain + "\r\nMAIL FROM:<" + alice + ">\r\nRCPT TO:<" + bob + ">\r\nDATA\r\n", "500", "\n354 "},
	}
	before := r.storeDigest()
	p := r.startProber("imap", "pop3", "smtp")
	h := watchHeap()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := map[string]string{"imap": r.imap, "pop3": r.pop3, "smtp": r.smtp}[tc.proto]
			written, reply, took := streamEndless(t, addr, tc.prefix, sc.lineBytes)
			t.Logf("%s: daemon closed after %s of the %s line in %v, last words %q", tc.name, mib(uint64(written)), mib(uint64(sc.lineBytes)), took.Round(time.Millisecond), lastLine(reply))
			if written >= maxBytesBeforeClose {
				t.Errorf("the daemon took %d bytes of one line before closing, want < %d", written, maxBytesBeforeClose)
			}
			if !strings.Contains(lastLine(reply), tc.want) {
				t.Errorf("the daemon's last words %q do not contain %q", lastLine(reply), tc.want)
			}
			if !strings.Contains(reply, tc.before) {
				t.Errorf("the daemon never said %q: %q", tc.before, reply)
			}
		})
	}
	growth := h.end()
	p50, p99, n := p.finish(t)
	t.Logf("heap growth at peak: %s (base %s); honest logins meanwhile: n=%d p50=%v p99=%v",
		mib(growth), mib(h.base), n, p50.Round(time.Millisecond), p99.Round(time.Millisecond))
	if growth > maxHeapGrowth {
		t.Errorf("heap grew by %s while lines streamed, want < %s", mib(growth), mib(maxHeapGrowth))
	}
	if r.storeDigest() != before {
		t.Error("the token store changed during the attack")
	}
}

// streamEndless sends prefix, then up to total bytes without a line end,
// and reads what the daemon says until it closes the connection. It
// returns the bytes written before the connection broke, the daemon's
// words (the end of them) and how long it took.
func streamEndless(t *testing.T, addr, prefix string, total int64) (written int64, reply string, took time.Duration) {
	t.Helper()
	c, err := dialFrom(addr, sourceAddr(attackerNet, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_ = c.SetDeadline(start.Add(closeWithin))
	replies := make(chan string, 1)
	go func() {
		s, _ := readAllUntilClosed(c, 1<<20)
		replies <- s
	}()
	if prefix != "" {
		if _, err := io.WriteString(c, prefix); err != nil {
			t.Fatal(err)
		}
		// Let the daemon act on the prefix (continuations, logins) before
		// the flood, as a real client would.
		time.Sleep(200 * time.Millisecond)
	}
	chunk := bytes.Repeat([]byte("A"), 64<<10)
	for written < total {
		n, err := c.Write(chunk[:min(int64(len(chunk)), total-written)])
		written += int64(n)
		if err != nil {
			break
		}
	}
	if written >= total {
		t.Errorf("the daemon read all %s of one line", mib(uint64(total)))
	}
	select {
	case reply = <-replies:
	case <-time.After(closeWithin):
		t.Fatalf("the daemon did not close the connection within %v", closeWithin)
	}
	return written, reply, time.Since(start)
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\r\n"), "\n")
	return strings.TrimRight(lines[len(lines)-1], "\r")
}

func TestHostileHugeLiterals(t *testing.T) {
	r := newRigWith(t, rigOptions{})
	tests := []struct {
		name string
		send string // the attack; then, if flood, endless bytes
		want []string
		// flood sends 64 MiB after the attack as if the literal were coming.
		flood bool
	}{
		{"4 GB synchronizing literal as first command", "a1 LOGIN {4294967296}\r\n", []string{"* BYE", ""}, true},
		{"4 GB synchronizing literal", "a0 NOOP\r\na1 LOGIN {4294967296}\r\n", []string{"a1 BAD [TOOBIG]"}, true},
		{"4 GB non-synchronizing literal", "a0 NOOP\r\na1 LOGIN {4294967296+}\r\n", []string{"* BYE", ""}, true},
		{"4 GB password literal after a user literal", "a0 NOOP\r\na1 LOGIN {9+}\r\nerp-alice {4294967296}\r\n", []string{"a1 BAD [TOOBIG]"}, true},
		{"literal length overflowing 64 bits", "a0 NOOP\r\na1 LOGIN {99999999999999999999999}\r\n", []string{"a1 BAD"}, false},
		{"negative literal", "a0 NOOP\r\na1 LOGIN {-1}\r\n", []string{"a1 BAD"}, false},
		{"literals beyond the count bound", "a0 NOOP\r\na1 ID ({1+}\r\na {1+}\r\nb {1+}\r\nc {1+}\r\nd {1+}\r\ne)\r\n", []string{"BYE"}, false},
		{"4 GB literal in AUTHENTICATE", "a0 NOOP\r\na1 AUTHENTICATE PLAIN {4294967296}\r\n", []string{"a1 BAD"}, true},
	}
	h := watchHeap()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dialFrom(r.imap, sourceAddr(attackerNet, 2))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(closeWithin))
			replies := make(chan string, 1)
			go func() {
				s, _ := readAllUntilClosed(c, 1<<16)
				replies <- s
			}()
			io.WriteString(c, tc.send)
			written := int64(0)
			if tc.flood {
				time.Sleep(100 * time.Millisecond)
				chunk := bytes.Repeat([]byte("x"), 64<<10)
				for written < 64<<20 {
					n, err := c.Write(chunk)
					written += int64(n)
					if err != nil {
						break
					}
				}
			} else if cw, ok := c.(*net.TCPConn); ok {
				cw.CloseWrite()
			}
			var got string
			select {
			case got = <-replies:
			case <-time.After(closeWithin):
				t.Fatalf("the daemon did not close the connection within %v", closeWithin)
			}
			t.Logf("daemon: %q", got)
			if strings.Contains(got, "\n+ ") {
				t.Errorf("the daemon asked for the literal's bytes: %q", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("reply %q does not contain %q", got, w)
				}
			}
			if written >= 64<<20 {
				t.Errorf("the daemon read all 64 MiB of the flood")
			}
		})
	}
	if growth := h.end(); growth > maxHeapGrowth {
		t.Errorf("heap grew by %s, want < %s", mib(growth), mib(maxHeapGrowth))
	}
}

func TestHostileIdleConnections(t *testing.T) {
	sc := scaleOf()
	// The clients' sockets, the daemon's for the served connections (the
	// refused ones are closed at once), and some to spare.
	raiseFileLimit(t, sc.idleConns+sc.maxConns+1000)
	r := newRigWith(t, rigOptions{serverYAML: fmt.Sprintf("preauth_timeout: %s, max_connections: %d", sc.idlePreAuth, sc.maxConns)})
	before := r.storeDigest()

	// IMAP is flooded; honest clients use POP3 and SMTP meanwhile.
	p := r.startProber("pop3", "smtp")
	h := watchHeap()
	res := flood(t, r.imap, sc.idleConns, sc.idlePreAuth, "* OK", "* BYE [UNAVAILABLE]")
	growth := h.end()
	p50, p99, n := p.finish(t)
	t.Logf("IMAP: %d idle connections: %d greeted, %d refused busy, %d closed without reply; all closed %v after connecting (pre-auth timeout %v); heap growth %s (%.1f KiB per open connection); honest POP3/SMTP logins meanwhile: n=%d p50=%v p99=%v",
		sc.idleConns, res.greeted, res.busy, res.silent, res.lastClose.Round(time.Millisecond), sc.idlePreAuth,
		mib(growth), float64(growth)/1024/float64(max(res.greeted, 1)), n, p50.Round(time.Millisecond), p99.Round(time.Millisecond))
	if res.greeted != sc.maxConns {
		t.Errorf("%d connections were served, want max_connections = %d", res.greeted, sc.maxConns)
	}
	if res.autologout != res.greeted {
		t.Errorf("%d of %d idle connections were ended with BYE by the pre-auth timeout", res.autologout, res.greeted)
	}

	// POP3, then SMTP (one at a time, for the open-file limit) are
	// flooded; honest clients use IMAP meanwhile.
	p = r.startProber("imap")
	pop := flood(t, r.pop3, sc.maxConns+100, sc.idlePreAuth, "+OK", "-ERR")
	smtp := flood(t, r.smtp, sc.maxConns+100, sc.idlePreAuth, "220", "421")
	p50, p99, n = p.finish(t)
	t.Logf("POP3: %v; SMTP: %v; honest IMAP logins meanwhile: n=%d p50=%v p99=%v", pop, smtp, n, p50.Round(time.Millisecond), p99.Round(time.Millisecond))
	for name, res := range map[string]floodResult{"POP3": pop, "SMTP": smtp} {
		if res.greeted != sc.maxConns || res.busy+res.silent != 100 {
			t.Errorf("%s: %d served and %d refused of %d, want %d and 100", name, res.greeted, res.busy+res.silent, sc.maxConns+100, sc.maxConns)
		}
		if res.autologout != res.greeted {
			t.Errorf("%s: %d of %d idle connections got the protocol's farewell at the pre-auth timeout", name, res.autologout, res.greeted)
		}
	}
	// Once the pre-auth timeout has freed the slots, everyone gets in again.
	for _, proto := range []string{"imap", "pop3", "smtp"} {
		l := r.honestLogin(proto)
		c, err := dialFrom(l.addr, sourceAddr(honestNet, 250))
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if err := l.do(c, bufio.NewReader(c)); err != nil {
			t.Errorf("%s login after the flood: %v", proto, err)
		}
		c.Close()
	}
	if r.storeDigest() != before {
		t.Error("the token store changed during the attack")
	}
}

// floodResult counts how a flood of idle connections was answered.
type floodResult struct {
	greeted    int           // got the greeting
	busy       int           // got the "too busy" reply
	silent     int           // closed without a reply (over the refusal bound)
	autologout int           // greeted, then got a farewell and a close at the pre-auth timeout
	lastClose  time.Duration // longest time from connect to close
}

func (f floodResult) String() string {
	return fmt.Sprintf("%d served, %d refused busy, %d closed without reply, %d ended by the pre-auth timeout, all closed within %v",
		f.greeted, f.busy, f.silent, f.autologout, f.lastClose.Round(time.Millisecond))
}

// flood opens n connections to addr that send nothing, and waits until the
// daemon has closed each. greeting and busy are the prefixes of the
// protocol's greeting and "too busy" reply; preAuth is the listener's
// pre-auth timeout, which must not run out before all n are open (else
// early connections free their slots for later ones).
func flood(t *testing.T, addr string, n int, preAuth time.Duration, greeting, busy string) floodResult {
	t.Helper()
	defer func(start time.Time) {
		if took := time.Since(start); took > preAuth+closeWithin {
			t.Errorf("the flood took %v", took)
		}
	}(time.Now())
	floodStart := time.Now()
	var mu sync.Mutex
	var res floodResult
	var wg sync.WaitGroup
	sem := make(chan struct{}, 200) // connects in flight
	for i := range n {
		sem <- struct{}{}
		c, err := dialFrom(addr, sourceAddr(attackerNet, 10+i%200))
		<-sem
		if err != nil {
			t.Errorf("connection %d: %v", i, err)
			continue
		}
		start := time.Now()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			_ = c.SetDeadline(start.Add(preAuth + closeWithin))
			got, err := readAllUntilClosed(c, 4096)
			took := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			res.lastClose = max(res.lastClose, took)
			switch {
			case strings.HasPrefix(got, greeting):
				res.greeted++
				rest := got[strings.Index(got, "\n")+1:]
				if rest != "" && err == nil && took >= preAuth-100*time.Millisecond {
					res.autologout++
				}
			case strings.HasPrefix(got, busy):
				res.busy++
			case got == "":
				res.silent++
			default:
				t.Errorf("unexpected words from the daemon: %q (%v)", got, err)
			}
		}()
	}
	if opened := time.Since(floodStart); opened >= preAuth {
		t.Fatalf("opening %d connections took %v, longer than the pre-auth timeout %v: raise it for this scale", n, opened, preAuth)
	}
	wg.Wait()
	return res
}

func TestHostileSlowloris(t *testing.T) {
	sc := scaleOf()
	r := newRigWith(t, rigOptions{serverYAML: fmt.Sprintf("preauth_timeout: %s", testPreAuth)})
	before := r.storeDigest()
	plain := b64("\x00" + aliceLogin + "\x00" + alicePass)
	attacks := []struct {
		proto, addr, text string
	}{
		{"imap", r.imap, "a1 LOGIN erp-alice \"local pw 1\"\r\n"},
		{"pop3", r.pop3, "USER erp-alice\r\nPASS local pw 1\r\n"},
		{"smtp", r.smtp, "EHLO slow.contoso.test\r\nAUTH PLAIN " + plain + "\r\n"},
	}
	p := r.startProber("imap", "pop3", "smtp")
	var wg sync.WaitGroup
	var mu sync.Mutex
	longest := map[string]time.Duration{}
	for i := range sc.slowConns {
		a := attacks[i%len(attacks)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			took, err := slowClient(a.addr, sourceAddr(attackerNet, 20+i%100), a.text)
			if err != nil {
				t.Errorf("%s slow client: %v", a.proto, err)
				return
			}
			mu.Lock()
			longest[a.proto] = max(longest[a.proto], took)
			mu.Unlock()
		}()
	}
	wg.Wait()
	p50, p99, n := p.finish(t)
	t.Logf("%d slow clients (1 byte/s): longest connection per protocol %v (pre-auth timeout %v); honest logins meanwhile: n=%d p50=%v p99=%v",
		sc.slowConns, longest, testPreAuth, n, p50.Round(time.Millisecond), p99.Round(time.Millisecond))
	for proto, d := range longest {
		if d > testPreAuth+2*time.Second {
			t.Errorf("%s: a slow client stayed connected %v, want at most the pre-auth timeout %v (+2 s)", proto, d, testPreAuth)
		}
	}
	if r.storeDigest() != before {
		t.Error("the token store changed during the attack")
	}
}

// slowClient sends text one byte per second until the daemon closes the
// connection, and returns how long the connection lasted.
func slowClient(addr string, src net.IP, text string) (time.Duration, error) {
	c, err := dialFrom(addr, src)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	start := time.Now()
	_ = c.SetDeadline(start.Add(closeWithin))
	closed := make(chan struct{})
	go func() {
		readAllUntilClosed(c, 4096)
		close(closed)
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for i := 0; ; i++ {
		if _, err := c.Write([]byte{text[i%len(text)]}); err != nil {
			break
		}
		select {
		case <-closed:
			return time.Since(start), nil
		case <-tick.C:
		}
	}
	select {
	case <-closed:
		return time.Since(start), nil
	case <-time.After(closeWithin):
		return 0, errors.New("the daemon did not close the connection")
	}
}

func TestHostileWrongPasswords(t *testing.T) {
	sc := scaleOf()
	var verifies atomic.Int64
	creds := proxy.CredentialOptions{Verify: func(phc, password string) (bool, error) {
		verifies.Add(1)
		return passhash.Verify(phc, password)
	}}
	r := newRigWith(t, rigOptions{creds: creds})
	before := r.storeDigest()
	scenarios := []struct {
		name    string
		sources int
	}{
		{"one source", 1},
		{fmt.Sprintf("%d sources", sc.sources), sc.sources},
	}
	for i, s := range scenarios {
		t.Run(s.name, func(t *testing.T) {
			p := r.startProber("imap", "pop3", "smtp")
			v0 := verifies.Load()
			start := time.Now()
			res := guess(t, r, sc.wrongPasswords, s.sources, 100+i*60)
			took := time.Since(start)
			p50, p99, n := p.finish(t)
			v := verifies.Load() - v0
			// Each source is refused after proxy.DefaultAddrLimit failures
			// per window; the honest prober adds at most one (its password
			// is then cached).
			bound := int64(s.sources*proxy.DefaultAddrLimit + 3)
			t.Logf("%d wrong passwords from %d source(s) (at most %d/s) in %v: %d answered failed, %d throttled, %d unanswered (connection closed), %d connections; %d argon2id verifications (bound %d); honest logins meanwhile: n=%d p50=%v p99=%v",
				res.attempts+res.cut, s.sources, guessRate, took.Round(time.Millisecond), res.failed, res.throttled, res.cut, res.conns, v, bound, n, p50.Round(time.Millisecond), p99.Round(time.Millisecond))
			if res.accepted > 0 {
				t.Errorf("%d wrong passwords were accepted", res.accepted)
			}
			if res.attempts+res.cut != sc.wrongPasswords {
				t.Errorf("%d attempts answered and %d cut off, want %d in all", res.attempts, res.cut, sc.wrongPasswords)
			}
			if v > bound {
				t.Errorf("%d verifications for %d wrong passwords from %d sources, want at most %d", v, res.attempts, s.sources, bound)
			}
		})
	}
	if r.storeDigest() != before {
		t.Error("the token store changed during the attack")
	}
	if !strings.Contains(r.logs.String(), "too many failed logins from this source") {
		t.Error("no log line says a source is being refused")
	}
}

// guessResult counts the answers to a password-guessing run.
type guessResult struct {
	attempts, failed, throttled, accepted, conns int
	// cut counts passwords sent on a connection the daemon ended before
	// answering (its pre-auth timeout ran out while the guess waited).
	cut int
}

// A guesser keeps guessersPerSource connections open per source address,
// so that the daemon's growing delays before each verification overlap as
// an attacker's would, and sends at most guessRate passwords per second in
// all: the attacking clients run in the daemon's process and on its CPU,
// so an unbounded flood would measure the machine, not the daemon.
const (
	guessersPerSource = 5
	guessRate         = 500
	// guessesPerConn is how many passwords a guesser tries per connection:
	// every front closes a connection after 3 failed logins.
	guessesPerConn = 3
)

// guess sends total wrong passwords over IMAP, POP3 and SMTP from sources
// addresses (127.0.1.first ...), logins alternating between a real one
// and made-up ones; each connection tries until the daemon closes it.
func guess(t *testing.T, r *rig, total, sources, first int) guessResult {
	t.Helper()
	var next atomic.Int64
	var mu sync.Mutex
	var res guessResult
	var wg sync.WaitGroup
	pace := time.NewTicker(time.Second / guessRate)
	defer pace.Stop()
	for w := range sources * guessersPerSource {
		src := sourceAddr(attackerNet, first+w%sources)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; next.Load() < int64(total); i++ {
				g, err := guessConn(r, []string{"imap", "pop3", "smtp"}[(w+i)%3], src, &next, int64(total), pace.C)
				mu.Lock()
				res.attempts += g.attempts
				res.failed += g.failed
				res.throttled += g.throttled
				res.accepted += g.accepted
				res.cut += g.cut
				res.conns++
				mu.Unlock()
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return res
}

// guessConn tries wrong passwords on one connection until the daemon ends
// it or the budget (next counts up to total) is spent.
func guessConn(r *rig, proto string, src net.IP, next *atomic.Int64, total int64, pace <-chan time.Time) (guessResult, error) {
	var g guessResult
	addr := map[string]string{"imap": r.imap, "pop3": r.pop3, "smtp": r.smtp}[proto]
	c, err := dialFrom(addr, src)
	if err != nil {
		return g, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(c)
	if _, err := br.ReadString('\n'); err != nil {
		return g, fmt.Errorf("%s greeting: %w", proto, err)
	}
	if proto == "smtp" {
		io.WriteString(c, "EHLO guesser\r\n")
		if err := expectSMTP(br, "250"); err != nil {
			return g, err
		}
	}
	for range guessesPerConn {
		<-pace
		n := next.Add(1)
		if n > total {
			return g, nil
		}
		login := aliceLogin
		if n%2 == 0 {
			login = fmt.Sprintf("guess%d", n)
		}
		reply, err := tryPassword(c, br, proto, login, fmt.Sprintf("wrong %d", n))
		if err != nil {
			g.cut++
			return g, nil
		}
		g.attempts++
		switch {
		case strings.HasPrefix(reply, "a OK"), strings.HasPrefix(reply, "+OK"), strings.HasPrefix(reply, "235"):
			g.accepted++
		case strings.Contains(reply, "[UNAVAILABLE]"), strings.Contains(reply, "[SYS/TEMP]"), strings.HasPrefix(reply, "454"), strings.HasPrefix(reply, "421"):
			g.throttled++
		case strings.Contains(reply, "AUTHENTICATIONFAILED"), strings.Contains(reply, "[AUTH]"), strings.HasPrefix(reply, "535"):
			g.failed++
		default:
			return g, fmt.Errorf("%s: unexpected reply to a wrong password: %q", proto, reply)
		}
		if strings.HasPrefix(reply, "421") {
			return g, nil
		}
	}
	return g, nil
}

// tryPassword sends one login with password and returns the reply line.
func tryPassword(c net.Conn, br *bufio.Reader, proto, login, password string) (string, error) {
	switch proto {
	case "imap":
		fmt.Fprintf(c, "a LOGIN %s \"%s\"\r\n", login, password)
	case "pop3":
		fmt.Fprintf(c, "USER %s\r\n", login)
		if l, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(l, "+OK") {
			return "", fmt.Errorf("USER: %q %v", l, err)
		}
		fmt.Fprintf(c, "PASS %s\r\n", password)
	case "smtp":
		fmt.Fprintf(c, "AUTH PLAIN %s\r\n", b64("\x00"+login+"\x00"+password))
	}
	for range maxReplyLines {
		l, err := br.ReadString('\n')
		if err != nil {
			return "", err
		}
		if proto == "imap" && strings.HasPrefix(l, "* ") {
			if strings.HasPrefix(l, "* BYE") {
				return "", io.EOF
			}
			continue
		}
		return strings.TrimRight(l, "\r\n"), nil
	}
	return "", errors.New("no reply")
}

func TestHostileGarbage(t *testing.T) {
	sc := scaleOf()
	r := newRigWith(t, rigOptions{serverYAML: fmt.Sprintf("preauth_timeout: %s", testPreAuth)})
	before := r.storeDigest()
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d", seed)
	pools := newGarbagePools(rand.New(rand.NewPCG(seed, 0)))
	p := r.startProber("imap", "pop3", "smtp")
	h := watchHeap()
	var wg sync.WaitGroup
	var mu sync.Mutex
	longest := map[string]time.Duration{}
	conns := map[string]int{}
	until := time.Now().Add(sc.garbageFor)
	// The attacking clients run on the daemon's CPU: a bounded rate of new
	// connections measures the daemon, an unbounded one the machine.
	pace := time.NewTicker(time.Second / time.Duration(sc.garbageRate))
	defer pace.Stop()
	for _, target := range []struct{ proto, addr string }{{"imap", r.imap}, {"pop3", r.pop3}, {"smtp", r.smtp}} {
		for w := range sc.garbageConns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(seed, uint64(w+1)))
				for time.Now().Before(until) {
					<-pace.C
					took, err := sendGarbage(target.addr, sourceAddr(attackerNet, 30+w%100), pools, rng)
					if err != nil {
						t.Errorf("%s garbage connection: %v", target.proto, err)
						return
					}
					mu.Lock()
					longest[target.proto] = max(longest[target.proto], took)
					conns[target.proto]++
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	growth := h.end()
	p50, p99, n := p.finish(t)
	t.Logf("%v of garbage, at most %d connections at a time per port and %d new ones per second: connections %v, longest %v; heap growth %s; honest logins meanwhile: n=%d p50=%v p99=%v",
		sc.garbageFor, sc.garbageConns, sc.garbageRate, conns, longest, mib(growth), n, p50.Round(time.Millisecond), p99.Round(time.Millisecond))
	if growth > maxHeapGrowth {
		t.Errorf("heap grew by %s, want < %s", mib(growth), mib(maxHeapGrowth))
	}
	if r.storeDigest() != before {
		t.Error("the token store changed during the attack")
	}
	if strings.Contains(r.logs.String(), "panic") {
		t.Error("the log mentions a panic")
	}
}

// garbageAlphabet is what printable garbage is made of: protocol syntax,
// line ends and command words.
const garbageAlphabet = " !\"(){}*+\r\nAaZz0123456789LOGINAUTHUSERPASSEHLODATA\\"

// maxGarbage bounds the random bytes one garbage connection sends.
const maxGarbage = 256 << 10

// garbagePools are made once per test, so that the attacking clients,
// which share the daemon's CPU, spend it on sending rather than on
// generating: one pool of random binary, one of random printable protocol
// syntax with random line ends.
type garbagePools struct{ binary, printable []byte }

// garbagePoolSize is the size of each pool.
const garbagePoolSize = 1 << 20

func newGarbagePools(rng *rand.Rand) garbagePools {
	g := garbagePools{binary: make([]byte, garbagePoolSize), printable: make([]byte, garbagePoolSize)}
	for i := range garbagePoolSize {
		g.binary[i] = byte(rng.Uint32())
		g.printable[i] = garbageAlphabet[rng.IntN(len(garbageAlphabet))]
	}
	return g
}

// sendGarbage sends random slices of one pool until the daemon closes the
// connection or maxGarbage bytes went out, then half-closes and waits for
// the daemon to close. It returns how long the connection lasted.
func sendGarbage(addr string, src net.IP, pools garbagePools, rng *rand.Rand) (time.Duration, error) {
	c, err := dialFrom(addr, src)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	start := time.Now()
	_ = c.SetDeadline(start.Add(testPreAuth + closeWithin))
	closed := make(chan struct{})
	go func() {
		readAllUntilClosed(c, 0)
		close(closed)
	}()
	pool := pools.binary
	if rng.IntN(2) == 0 {
		pool = pools.printable
	}
	for sent := 0; sent < maxGarbage; {
		n := 1 + rng.IntN(8192)
		off := rng.IntN(len(pool) - n)
		if _, err := c.Write(pool[off : off+n]); err != nil {
			break
		}
		sent += n
	}
	if cw, ok := c.(*net.TCPConn); ok {
		cw.CloseWrite()
	}
	select {
	case <-closed:
		return time.Since(start), nil
	case <-time.After(testPreAuth + closeWithin):
		return 0, errors.New("the daemon did not close the connection")
	}
}

// raiseFileLimit raises this process's open-file limit to at least n when
// it is lower (root may raise the hard limit too), or skips the test.
func raiseFileLimit(t *testing.T, n int) {
	t.Helper()
	if err := setFileLimit(uint64(n)); err != nil {
		t.Skipf("needs %d open files: %v", n, err)
	}
}
