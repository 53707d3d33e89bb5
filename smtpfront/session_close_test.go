package smtpfront

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/proxy"
)

// fakeMetrics records what the front reports on its Gateway's Meter.
type fakeMetrics struct {
	mu      sync.Mutex
	logins  map[string]int   // by result
	relayed map[string]int64 // by direction
}

func newFakeMetrics() *fakeMetrics {
	return &fakeMetrics{logins: map[string]int{}, relayed: map[string]int64{}}
}

func (m *fakeMetrics) ConnOpened(string)                           {}
func (m *fakeMetrics) ConnClosed(string)                           {}
func (m *fakeMetrics) ConnRefused(string)                          {}
func (m *fakeMetrics) Throttled(string)                            {}
func (m *fakeMetrics) IdentityLimited(string)                      {}
func (m *fakeMetrics) UpstreamDialed(string, time.Duration)        {}
func (m *fakeMetrics) UpstreamAuthenticated(string, time.Duration) {}

func (m *fakeMetrics) Login(_, result string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.logins[result]++
}

func (m *fakeMetrics) Relayed(_, direction string, n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.relayed[direction] += n
}

func (m *fakeMetrics) get() (logins map[string]int, relayed map[string]int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	logins, relayed = map[string]int{}, map[string]int64{}
	for k, v := range m.logins {
		logins[k] = v
	}
	for k, v := range m.relayed {
		relayed[k] = v
	}
	return logins, relayed
}

// withSessions registers the front's sessions in sessions.
func withSessions(sessions *proxy.Sessions) func(*Options) {
	return func(o *Options) { o.Gateway.Sessions = sessions }
}

// withMetrics counts the front's logins and relayed bytes in m.
func withMetrics(m proxy.Metrics) func(*Options) {
	return func(o *Options) { o.Gateway.Meter = proxy.Meter{Metrics: m, Protocol: "smtp"} }
}

var errAccountRemoved = errors.New("the account was removed from the configuration")

// TestReloadClosesIdleSession: a reload that removes the account ends its
// idle session at once with 421 4.7.0, and frees the upstream slot.
func TestReloadClosesIdleSession(t *testing.T) {
	sessions := &proxy.Sessions{}
	h := newHarness(t, withSessions(sessions))
	tc := h.loggedInTranscript()
	testkit.Eventually(t, 10*time.Second, "the session is registered", func() bool { return sessions.Count(testLogin) == 1 })
	if n := sessions.Close(testLogin, errAccountRemoved); n != 1 {
		t.Fatalf("Close ended %d sessions, want 1", n)
	}
	tc.expect("421 4.7.0 Account changed, closing connection")
	tc.expectClosed()
	testkit.Eventually(t, 10*time.Second, "the upstream slot is free", func() bool { return h.front.slots.InUse("smtp", testIdentity) == 0 })
	h.log.waitFor(t, "closing the session", "reason=\"the account was removed")
}

// TestReloadLetsDataFinish: a message being relayed when the reload comes
// is finished and acknowledged with the upstream's reply; the next thing
// the client hears is 421.
func TestReloadLetsDataFinish(t *testing.T) {
	sessions := &proxy.Sessions{}
	m := newFakeMetrics()
	h := newHarness(t, withSessions(sessions), withMetrics(m))
	tc := h.loggedInTranscript()
	tc.data("billing@example.com", "bob@example.net")
	// More than the relay's buffer, so that part of it reaches the
	// upstream before the rest is sent.
	first := "Subject: reload\r\n\r\n" + strings.Repeat("first part of a long message\r\n", 2*dataBufSize/30)
	tc.write(first)
	testkit.Eventually(t, 10*time.Second, "the message streams upstream", func() bool {
		_, relayed := m.get()
		return relayed[proxy.ClientToUpstream] >= dataBufSize
	})
	sessions.Close(testLogin, errAccountRemoved)
	tc.write("second part\r\n.\r\n")
	tc.expect("250 ")
	tc.expect("421 4.7.0 Account changed")
	tc.expectClosed()
	msgs := h.up.messages()
	if len(msgs) != 1 || string(msgs[0].data) != first+"second part\r\n" {
		t.Fatalf("upstream got %+v, want the whole message", msgs)
	}
}

// TestReloadRefusesPipelinedCommands: commands pipelined behind a message
// that was being relayed when the session was closed get one 421, and
// nothing after it.
func TestReloadRefusesPipelinedCommands(t *testing.T) {
	sessions := &proxy.Sessions{}
	m := newFakeMetrics()
	h := newHarness(t, withSessions(sessions), withMetrics(m))
	tc := h.loggedInTranscript()
	tc.data("billing@example.com", "bob@example.net")
	tc.write("Subject: pipelined\r\n\r\n" + strings.Repeat("x\r\n", dataBufSize))
	testkit.Eventually(t, 10*time.Second, "the message streams upstream", func() bool {
		_, relayed := m.get()
		return relayed[proxy.ClientToUpstream] >= dataBufSize
	})
	sessions.Close(testLogin, errAccountRemoved)
	tc.write(".\r\nMAIL FROM:<billing@example.com>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n")
	tc.expect("250 ")
	rest := tc.expectClosed()
	if rest == "" {
		t.Fatal("no 421 after the message")
	}
	// MAIL gets the 421; the replies go-smtp gives RCPT and DATA are not
	// sent.
	if rest != "421 4.7.0 Account changed, closing connection\r\n" {
		t.Errorf("after the reload the client got %q, want one 421 4.7.0", rest)
	}
	if n := len(h.up.messages()); n != 1 {
		t.Fatalf("upstream got %d messages, want the one being relayed", n)
	}
}

// TestAuditAndMetrics: one audit line per login attempt through
// proxy.Gateway.AuditLogin (counted in the login metric), and the DATA bytes in
// the relayed metric.
func TestAuditAndMetrics(t *testing.T) {
	m := newFakeMetrics()
	h := newHarness(t, withMetrics(m))
	tc := h.transcript()
	tc.cmd("EHLO client.test", "250 ")
	tc.cmd("AUTH PLAIN "+plainIR("", testLogin, "wrong"), "535 5.7.8")
	tc.cmd("AUTH PLAIN "+plainIR("", testLogin, testPassword), "235")
	tc.data("billing@example.com", "bob@example.net")
	msg := "Subject: metrics\r\n\r\nbody\r\n"
	tc.write(msg + ".\r\n")
	tc.expect("250 ")
	tc.cmd("QUIT", "221")
	logins, relayed := m.get()
	if logins[proxy.LoginSuccess] != 1 || logins[proxy.LoginFailure] != 1 {
		t.Errorf("login metric %v, want one success and one failure", logins)
	}
	if relayed[proxy.ClientToUpstream] != int64(len(msg)) {
		t.Errorf("relayed %v, want %d bytes client to upstream", relayed, len(msg))
	}
	log := h.log.waitFor(t, "result=success", "result=failure")
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "msg=login") {
			continue
		}
		// The keys of proxy.Gateway.AuditLogin, in its order, after the connection's.
		if !strings.Contains(line, "proto=smtp") || !strings.Contains(line, " result=") ||
			strings.Index(line, " result=") > strings.Index(line, " login=") ||
			strings.Index(line, " login=") > strings.Index(line, " identity=") ||
			strings.Index(line, " identity=") > strings.Index(line, " reason=") {
			t.Errorf("audit line not in proxy.Gateway.AuditLogin's form: %s", line)
		}
	}
}

// TestReloadClosesSessionAfterSTARTTLS: the 421 of a closed session goes
// through go-smtp's TLS layer, never as plaintext into the TLS stream.
func TestReloadClosesSessionAfterSTARTTLS(t *testing.T) {
	sessions := &proxy.Sessions{}
	server, client := testkit.TLSPair(t)
	h := newHarness(t, withSessions(sessions), withLocalTLS(server, false, false))
	tc := h.transcript()
	tc.startTLS(client)
	tc.login()
	testkit.Eventually(t, 10*time.Second, "the session is registered", func() bool { return sessions.Count(testLogin) == 1 })
	sessions.Close(testLogin, errAccountRemoved)
	tc.expect("421 4.7.0 Account changed, closing connection")
	tc.expectClosed()
}
