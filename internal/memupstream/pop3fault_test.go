package memupstream

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/textproto"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestPOP3Faults: each fault strikes where it says, for as many
// connections as asked, and the next connection is served normally.
func TestPOP3Faults(t *testing.T) {
	tests := []struct {
		fault POP3Fault
		// dialog runs after the greeting (when there is one) and checks
		// the fault's effect.
		greeting string // prefix; "" when the fault cuts the greeting
		dialog   func(w *pop3Wire)
	}{
		{fault: POP3FaultCloseMidGreeting, dialog: func(w *pop3Wire) {}},
		{fault: POP3FaultBadGreeting, greeting: "-ERR [SYS/TEMP] Too busy", dialog: func(w *pop3Wire) { w.expectEOF() }},
		{fault: POP3FaultNoXOAUTH2, greeting: "+OK ", dialog: func(w *pop3Wire) {
			w.send("AUTH XOAUTH2")
			w.expect("-ERR Unrecognized authentication type")
		}},
		{fault: POP3FaultCloseOnAuth, greeting: "+OK ", dialog: func(w *pop3Wire) {
			w.send("AUTH XOAUTH2")
			w.expectEOF()
		}},
		{fault: POP3FaultRejectAlways, greeting: "+OK ", dialog: func(w *pop3Wire) {
			w.send("AUTH XOAUTH2")
			w.expect("+ ")
			w.send(ir(testUser, goodToken))
			w.expect("-ERR Authentication failure: unknown user name or bad password.")
		}},
		{fault: POP3FaultTempFail, greeting: "+OK ", dialog: func(w *pop3Wire) {
			w.send("AUTH XOAUTH2")
			w.expect("+ ")
			w.send(ir(testUser, goodToken))
			w.expect("-ERR [SYS/TEMP] ")
		}},
	}
	for _, tt := range tests {
		s, p := startPOP3(t)
		p.SetFault(tt.fault, 1)
		c, err := tls.Dial("tcp", p.Addr(), s.ClientTLS())
		if err != nil {
			t.Fatalf("fault %d: dialing: %v", tt.fault, err)
		}
		_ = c.SetDeadline(time.Now().Add(ioTimeout))
		w := &pop3Wire{t: t, c: c, tp: textproto.NewReader(bufio.NewReader(c))}
		if tt.greeting == "" {
			if b, _ := io.ReadAll(c); len(b) == 0 || bytes.Contains(b, []byte("\n")) {
				t.Errorf("fault %d: got %q, want half a greeting and the end", tt.fault, b)
			}
		} else {
			w.expect(tt.greeting)
		}
		tt.dialog(w)
		c.Close()
		// The fault was for one connection: the next one logs in.
		dialPOP3(t, s, p).login()
		if st := p.Stats(); st.Conns != 2 {
			t.Errorf("fault %d: %d connections counted, want 2", tt.fault, st.Conns)
		}
	}
}

// TestPOP3StatsCountAuthsAndLinesAfterChallenge: a rejected token gets the
// error challenge; the client's line after it is recorded.
func TestPOP3StatsCountAuthsAndLinesAfterChallenge(t *testing.T) {
	_, p := startPOP3(t)
	p.SetFault(POP3FaultTempFail, -1)
	p.SetFault(POP3FaultNone, 0) // switches it off again
	w := dialPOP3(t, p.srv, p)
	w.send("AUTH XOAUTH2")
	w.expect("+ ")
	w.send(ir(testUser, "stale-token"))
	w.expect("+ eyJ") // the JSON error challenge
	w.send("")
	w.expect("-ERR [AUTH] ")
	w.login()
	st := p.Stats()
	if st.Conns != 1 || st.Auths != 2 || !slices.Equal(st.AfterChallenge, []string{""}) {
		t.Errorf("stats %+v, want 1 connection, 2 XOAUTH2 responses and one empty line after the challenge", st)
	}
}

// TestPOP3STLS: with STARTTLS the upstream greets in plaintext, offers STLS
// and serves the session over TLS after it; a second STLS is refused.
func TestPOP3STLS(t *testing.T) {
	s := start(t)
	p, err := s.StartPOP3(POP3Options{STARTTLS: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	raw, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(ioTimeout))
	plain := &pop3Wire{t: t, tp: textproto.NewReader(bufio.NewReader(raw))}
	plain.expect("+OK ")
	if _, err := raw.Write([]byte("CAPA\r\n")); err != nil {
		t.Fatal(err)
	}
	plain.expect("+OK ")
	if caps := plain.dotBody(); !slices.Contains(splitLines(caps), "STLS") {
		t.Fatalf("CAPA before STLS lacks STLS: %q", caps)
	}
	if _, err := raw.Write([]byte("STLS\r\n")); err != nil {
		t.Fatal(err)
	}
	plain.expect("+OK Begin TLS")
	c := tls.Client(raw, s.ClientTLS())
	w := &pop3Wire{t: t, c: c, tp: textproto.NewReader(bufio.NewReader(c))}
	w.send("CAPA")
	w.expect("+OK ")
	if caps := w.dotBody(); slices.Contains(splitLines(caps), "STLS") {
		t.Errorf("CAPA over TLS still offers STLS: %q", caps)
	}
	w.send("STLS")
	w.expect("-ERR ")
	w.login()
}

// splitLines splits a dotBody into its lines.
func splitLines(s string) []string { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }
