package pop3front

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/memupstream"
	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/proxy"
	"github.com/xoauthd/xoauthd/tokens"
)

// login logs in as alice with USER/PASS.
func (c *client) login() {
	c.t.Helper()
	c.cmd("USER alice", "+OK")
	c.cmd("PASS "+alicePassword, "+OK Logged in.")
}

func TestRelayLargeMessageAndDelete(t *testing.T) {
	big, small := testkit.BigMessage(10<<20), []byte("Subject: s\r\n\r\nx\r\n")
	h := newHarness(t, withDrop(big, small))
	c := h.dialGreeted(t)
	c.login()
	c.cmd("STAT", fmt.Sprintf("+OK 2 %d", len(big)+17))
	c.send("LIST")
	c.expectPrefix("+OK ")
	if got, want := string(c.multiline()), fmt.Sprintf("1 %d\r\n2 17\r\n", len(big)); got != want {
		t.Fatalf("LIST: got %q, want %q", got, want)
	}
	c.send("UIDL")
	c.expectPrefix("+OK ")
	if got := string(c.multiline()); !uidlOfTwo.MatchString(got) {
		t.Fatalf("UIDL: got %q, want two unique ids", got)
	}
	c.cmd("RETR 1", fmt.Sprintf("+OK %d octets", len(big)))
	if got := c.multiline(); !bytes.Equal(got, big) {
		t.Fatalf("RETR: got %d bytes, want the %d sent (first difference at %d)", len(got), len(big), firstDiff(got, big))
	}
	c.cmd("DELE 1", "+OK Message 1 deleted")
	c.cmd("QUIT", "+OK Bye (1 messages left)")
	c.expectClosed()
	// The next session sees only the small message: the upstream removed
	// the big one at QUIT.
	c = h.dialGreeted(t)
	c.login()
	c.cmd("STAT", "+OK 1 17")
	c.cmd("RETR 1", "+OK 17 octets")
	if got := c.multiline(); !bytes.Equal(got, small) {
		t.Fatalf("upstream maildrop after DELE 1 and QUIT holds %q, want the small message", got)
	}
	c.cmd("QUIT", "+OK Bye (1 messages left)")
	c.expectClosed()
	h.close()
	logs := h.logs.String()
	for _, want := range []string{
		`msg=login`, `result=success login=alice identity=alice@example.test`, `mech=USER`, `msg=closed`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	m := regexp.MustCompile(`upstream_to_client=(\d+)`).FindStringSubmatch(logs)
	if m == nil {
		t.Fatal("no relay byte count in the log")
	}
	if n, _ := strconv.Atoi(m[1]); n < len(big) {
		t.Errorf("relay moved %d bytes to the client, want at least %d", n, len(big))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestStartTLSUpstream(t *testing.T) {
	h := newHarness(t, withStartTLSUpstream())
	c := h.dialGreeted(t)
	c.login()
	c.cmd("STAT", "+OK 2 53")
	c.cmd("QUIT", "+OK Bye (2 messages left)")
	c.expectClosed()
}

// closedAddr returns a loopback address nobody listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestLoginOutcomes(t *testing.T) {
	const (
		authFailed = "-ERR [AUTH] Authentication failed."
		admin      = "-ERR [SYS/PERM] The mail provider refused the login for this account; contact the administrator."
		signIn     = "-ERR [SYS/PERM] The mail provider sign-in for this account has ended; the administrator must sign in again."
		temporary  = "-ERR [SYS/TEMP] Service temporarily unavailable, try again later."
	)
	tests := []struct {
		name      string
		setup     func(t *testing.T, h *harness)
		login     string
		password  string
		reply     string
		conns     int      // upstream connections
		auths     int      // XOAUTH2 responses the upstream got
		after     []string // lines after error challenges
		refreshes int
		logs      []string
	}{
		{
			name: "ok", login: "alice", password: alicePassword, reply: "+OK Logged in.",
			conns: 1, auths: 1,
			logs: []string{"result=success", "mech=USER"},
		},
		{
			name: "rejected once then refreshed",
			setup: func(t *testing.T, h *harness) {
				h.tokens.set(mailbox, fakeIdentity{token: "stale-token", refreshed: aliceToken})
			},
			login: "alice", password: alicePassword, reply: "+OK Logged in.",
			conns: 2, auths: 2, after: []string{""}, refreshes: 1,
			logs: []string{"result=success"},
		},
		{
			name: "rejected twice",
			setup: func(t *testing.T, h *harness) {
				h.tokens.set(mailbox, fakeIdentity{token: "stale-token", refreshed: "other-token"})
			},
			login: "alice", password: alicePassword, reply: admin,
			conns: 2, auths: 2, after: []string{"", ""}, refreshes: 1,
			logs: []string{"result=failure", `reason="the upstream refused the login"`, "status 401", "POP.AccessAsUser.All"},
		},
		{
			name:  "rejected without challenge (Exchange)",
			setup: func(t *testing.T, h *harness) { h.up.setFault(memupstream.POP3FaultRejectAlways) },
			login: "alice", password: alicePassword, reply: admin,
			conns: 2, auths: 2, refreshes: 1,
			logs: []string{"result=failure", "unknown user name or bad password"},
		},
		{
			name: "refresh fails after rejection",
			setup: func(t *testing.T, h *harness) {
				h.tokens.set(mailbox, fakeIdentity{token: "stale-token", refreshErr: &tokens.TemporaryError{Meaning: "identity provider unreachable"}})
			},
			login: "alice", password: alicePassword, reply: temporary,
			conns: 1, auths: 1, after: []string{""}, refreshes: 1,
			logs: []string{"result=error", "identity provider unreachable"},
		},
		{
			name: "needs login", login: "carol", password: "carol-secret", reply: signIn,
			logs: []string{"result=failure", `reason="the identity needs a new sign-in"`, `why="Refresh token expired (AADSTS700082). Run \"xoauthd login carol@example.test\"."`},
		},
		{
			name: "identity provider down", login: "erin", password: "erin-secret", reply: temporary,
			logs: []string{"result=error", "identity=erin@example.test", `why="Identity provider unreachable. Nothing to fix`},
		},
		{
			name: "bad credentials", login: "alice", password: "hunter2", reply: authFailed,
			logs: []string{"result=failure", `reason="bad local credentials"`},
		},
		{
			name: "throttled", login: "dave", password: "hunter2",
			reply: "-ERR [SYS/TEMP] Too many failed logins, try again later.",
			logs:  []string{"result=failure", `reason="throttled after failed logins"`},
		},
		{
			name: "upstream down",
			setup: func(t *testing.T, h *harness) {
				d := h.up.dialer()
				d.Addr = closedAddr(t)
				h.dialer.Store(d)
			},
			login: "alice", password: alicePassword, reply: temporary,
			logs: []string{"result=error", `reason="identity provider or upstream unavailable"`},
		},
		{
			name:  "upstream closes mid-greeting",
			setup: func(t *testing.T, h *harness) { h.up.setFault(memupstream.POP3FaultCloseMidGreeting) },
			login: "alice", password: alicePassword, reply: temporary, conns: 1,
			logs: []string{"result=error", "greeting"},
		},
		{
			name:  "upstream greets with -ERR",
			setup: func(t *testing.T, h *harness) { h.up.setFault(memupstream.POP3FaultBadGreeting) },
			login: "alice", password: alicePassword, reply: temporary, conns: 1,
			logs: []string{"result=error", "Too busy"},
		},
		{
			name:  "upstream closes after AUTH",
			setup: func(t *testing.T, h *harness) { h.up.setFault(memupstream.POP3FaultCloseOnAuth) },
			login: "alice", password: alicePassword, reply: temporary, conns: 1,
			logs: []string{"result=error", "AUTH XOAUTH2"},
		},
		{
			name:  "upstream temporarily refuses",
			setup: func(t *testing.T, h *harness) { h.up.setFault(memupstream.POP3FaultTempFail) },
			login: "alice", password: alicePassword, reply: temporary, conns: 1, auths: 1,
			logs: []string{"result=error", "SYS/TEMP"},
		},
		{
			name:  "upstream without XOAUTH2",
			setup: func(t *testing.T, h *harness) { h.up.setFault(memupstream.POP3FaultNoXOAUTH2) },
			login: "alice", password: alicePassword, reply: temporary, conns: 1,
			logs: []string{"result=error", "hint: the upstream must offer SASL XOAUTH2"},
		},
		{
			name: "user= is the mailbox, not the identity",
			setup: func(t *testing.T, h *harness) {
				h.up.allow("shared-token", "shared@example.test")
				h.tokens.set(mailbox, fakeIdentity{token: "shared-token", refreshed: "shared-token"})
			},
			login: "mallory", password: "mallory-secret", reply: "+OK Logged in.", conns: 1, auths: 1,
			logs: []string{"mailbox=shared@example.test"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			if tt.setup != nil {
				tt.setup(t, h)
			}
			c := h.dialGreeted(t)
			c.cmd("USER "+tt.login, "+OK")
			c.cmd("PASS "+tt.password, tt.reply)
			c.send("QUIT")
			c.expectPrefix("+OK Bye") // the front's or, logged in, the upstream's
			c.expectClosed()
			h.close()
			conns, auths, after := h.up.stats()
			_, refreshes := h.tokens.counts()
			if conns != tt.conns || auths != tt.auths || len(refreshes) != tt.refreshes {
				t.Errorf("upstream connections %d, XOAUTH2 responses %d, refreshes %d; want %d, %d, %d",
					conns, auths, len(refreshes), tt.conns, tt.auths, tt.refreshes)
			}
			if fmt.Sprint(after) != fmt.Sprint(tt.after) {
				t.Errorf("lines after error challenges: %q, want %q", after, tt.after)
			}
			logs := h.logs.String()
			if n := strings.Count(logs, "msg=login "); n != 1 {
				t.Errorf("%d audit lines, want 1", n)
			}
			for _, want := range tt.logs {
				if !strings.Contains(logs, want) {
					t.Errorf("log lacks %q", want)
				}
			}
		})
	}
}

func TestRefuse(t *testing.T) {
	h := newHarness(t, withMaxConns(1))
	first := h.dialGreeted(t)
	second := h.dial(t)
	second.expect("-ERR [SYS/TEMP] Too many connections, try again later")
	second.expectClosed()
	first.cmd("QUIT", "+OK Bye")
}

func TestShutdownEndsPreAuthSession(t *testing.T) {
	h := newHarness(t)
	c := h.dialGreeted(t)
	c.cmd("USER alice", "+OK")
	// A graceful shutdown (the drain): the waiting read is woken and the
	// client is told why. Cancelling the serving context instead is a hard
	// stop that cuts reads and writes alike, so a goodbye there would race
	// with the cut.
	go h.close()
	c.expect(strings.TrimSuffix(replyShutdown, "\r\n"))
	c.expectClosed()
}

// TestServeConnDrain drives ServeConn directly, as a wiring without
// proxy.Server would: when the drain channel closes, the session that waits
// for its next command ends at once with -ERR.
func TestServeConnDrain(t *testing.T) {
	srvConn, cliConn := testkit.TCPPair(t)
	drain := make(chan struct{})
	s := New(Options{Gateway: &proxy.Gateway{}})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer srvConn.Close()
		s.ServeConn(t.Context(), &proxy.Conn{Conn: srvConn, ID: 1, Drain: drain})
	}()
	c := newClient(t, cliConn)
	c.expect(strings.TrimSuffix(greeting, "\r\n"))
	c.cmd("CAPA", "+OK Capability list follows")
	c.multiline()
	close(drain)
	c.expect(strings.TrimSuffix(replyShutdown, "\r\n"))
	c.expectClosed()
	<-done
}

func newClient(t testing.TB, conn net.Conn) *client {
	return &client{t: t, conn: conn, r: bufio.NewReader(conn)}
}

// TestFailureReply checks the reply to each class of failure, and that
// the front's own errors reach the policy as the right class.
func TestFailureReply(t *testing.T) {
	tests := []struct {
		err   error
		reply string
	}{
		{proxy.ErrBadCredentials, "-ERR [AUTH] Authentication failed.\r\n"},
		{errAuthzid, "-ERR [AUTH] Authentication failed.\r\n"},
		{fmt.Errorf("x: %w", proxy.ErrThrottled), "-ERR [SYS/TEMP] Too many failed logins, try again later.\r\n"},
		{&proxy.ThrottledError{RetryAfter: 90 * time.Second}, "-ERR [SYS/TEMP] Too many failed logins, try again in 90 s.\r\n"},
		{fmt.Errorf("wrapped: %w", proxy.ErrSignInNeeded), "-ERR [SYS/PERM] The mail provider sign-in for this account has ended; the administrator must sign in again.\r\n"},
		{proxy.ErrProviderConfig, "-ERR [SYS/PERM] The mail provider refused this account's configuration; contact the administrator.\r\n"},
		{fmt.Errorf("%w: x", proxy.ErrUpstreamRejected), "-ERR [SYS/PERM] The mail provider refused the login for this account; contact the administrator.\r\n"},
		{&proxy.IdentityLimitError{Limit: 3}, "-ERR [IN-USE] Too many sessions for this account, try again when one has ended.\r\n"},
		{fmt.Errorf("%w: x", proxy.ErrUpstreamUnavailable), "-ERR [SYS/TEMP] Service temporarily unavailable, try again later.\r\n"},
		{errNoXOAUTH2, "-ERR [SYS/TEMP] Service temporarily unavailable, try again later.\r\n"},
		{errDeadline(), "-ERR [SYS/TEMP] Service temporarily unavailable, try again later.\r\n"},
	}
	for _, tt := range tests {
		if got := failureReply(proxy.Classify(tt.err)); got != tt.reply {
			t.Errorf("reply to %v = %q, want %q", tt.err, got, tt.reply)
		}
	}
}

// uidlOfTwo is a UIDL listing of two messages with distinct unique ids
// (memupstream's are UIDVALIDITY.UID).
var uidlOfTwo = regexp.MustCompile(`^1 (\d+\.\d+)\r\n2 (\d+\.\d+)\r\n$`)

func errDeadline() error {
	ctx, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	<-ctx.Done()
	return ctx.Err()
}

// TestPipelinedAfterLoginWaitsForOK checks the order: the client gets its
// +OK before any reply to a command it pipelined after PASS.
func TestPipelinedAfterLoginWaitsForOK(t *testing.T) {
	h := newHarness(t)
	c := h.dialGreeted(t)
	c.write("USER alice\r\nPASS " + alicePassword + "\r\nUIDL\r\nQUIT\r\n")
	c.expect("+OK")
	c.expect("+OK Logged in.")
	c.expectPrefix("+OK ")
	if got := string(c.multiline()); !uidlOfTwo.MatchString(got) {
		t.Fatalf("UIDL: %q", got)
	}
	c.expect("+OK Bye (2 messages left)")
	c.expectClosed()
}

// TestClientHangsUpDuringLogin: a client that leaves right after PASS ends
// its session and the upstream connection; nothing stays open.
func TestClientHangsUpDuringLogin(t *testing.T) {
	h := newHarness(t)
	c := h.dialGreeted(t)
	c.write("USER alice\r\nPASS " + alicePassword + "\r\nSTAT\r\n")
	c.conn.Close()
	h.close() // fails the test when a session is still open after the drain time
	if conns, _, _ := h.up.stats(); conns > 1 {
		t.Fatalf("%d upstream connections, want at most 1", conns)
	}
}
