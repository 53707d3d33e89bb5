package e2e

import (
	"bufio"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestSMTPIdleTimeoutFromConfig: idle_timeout on an SMTP server ends a
// silent logged-in session after that time with 421 4.4.2 (RFC 5321
// section 4.5.3.2.7), not after the front's built-in 5 minutes.
func TestSMTPIdleTimeoutFromConfig(t *testing.T) {
	t.Parallel()
	r := newRigWith(t, rigOptions{serverYAML: "idle_timeout: 1s"})
	conn, err := net.Dial("tcp", r.smtp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	reply := func(want string) {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("reading the reply (want %s): %v (got %q)", want, err, line)
			}
			if len(line) >= 4 && line[3] == '-' {
				continue
			}
			if !strings.HasPrefix(line, want) {
				t.Fatalf("reply %q, want %s", line, want)
			}
			return
		}
	}
	send := func(line string) {
		t.Helper()
		if _, err := io.WriteString(conn, line+"\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	reply("220 ")
	send("EHLO client.test")
	reply("250 ")
	send("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+aliceLogin+"\x00"+alicePass)))
	reply("235 ")
	// Silent now: the server must speak first, well before 5 minutes.
	conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	rest, err := io.ReadAll(br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("a silent session is still open after a minute with idle_timeout: 1s (read %q)", rest)
	}
	if !strings.HasPrefix(string(rest), "421 4.4.2 ") {
		t.Fatalf("a silent session got %q, want 421 4.4.2 and the end", rest)
	}
}
