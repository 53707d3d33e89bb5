package testupstream

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/internal/xoauth2"
)

func TestStartRejectsBadOptions(t *testing.T) {
	t.Parallel()
	if _, err := findDovecot(""); err != nil || os.Geteuid() != 0 {
		t.Skip("needs dovecot and root to get past the availability checks")
	}
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no key", Options{}, "JWTKey is empty"},
		{"dir too long", Options{JWTKey: []byte("k"), Dir: "/tmp/" + strings.Repeat("d", maxBaseDirLen)}, "too long"},
		{"dir with space", Options{JWTKey: []byte("k"), Dir: filepath.Join(t.TempDir(), "a b")}, "cannot hold"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Start(tt.opts)
			if err == nil {
				d.Close()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Start error = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestStartWithoutDovecot(t *testing.T) {
	t.Parallel()
	_, err := Start(Options{JWTKey: []byte("k"), Binary: filepath.Join(t.TempDir(), "dovecot")})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Start with a missing binary = %v, want ErrUnavailable", err)
	}
	for _, pkg := range strings.Fields(debianPackages) {
		if !strings.Contains(err.Error(), pkg) {
			t.Errorf("error %q does not name package %s", err, pkg)
		}
	}
}

// TestCloseKeepsGivenDir: a caller-supplied directory survives Close.
func TestCloseKeepsGivenDir(t *testing.T) {
	t.Parallel()
	dir, err := os.MkdirTemp("", "tu-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := New(t, Options{JWTKey: []byte("key"), Dir: dir})
	if d.Dir != dir {
		t.Errorf("Dir = %s, want %s", d.Dir, dir)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, confFileName)); err != nil {
		t.Errorf("config gone after Close: %v", err)
	}
	if !strings.Contains(d.Log(), "starting up") {
		t.Errorf("dovecot.log lacks the start-up line:\n%s", d.Log())
	}
}

// TestStopEndsOpenSessions: an outage also drops logged-in sessions.
func TestStopEndsOpenSessions(t *testing.T) {
	t.Parallel()
	idp, d := newRig(t)
	c := dialFrom(t, "127.0.0.1", d.POP3Addr, d.TLSConfig())
	c.expect("+OK")
	c.send("AUTH XOAUTH2 " + xoauth2.Encode("gina@example.test", idp.MintAccessToken("gina@example.test", testTokenTTL)))
	c.expect("+OK")
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	c.send("STAT")
	if line, err := c.r.ReadString('\n'); err == nil && strings.HasPrefix(line, "+OK") {
		t.Fatalf("session still answers after Stop: %q", line)
	}
}

// TestSubmissionRelayFailure: a DATA failure at the relay reaches the
// submission client as a temporary error, and nothing is delivered.
func TestSubmissionRelayFailure(t *testing.T) {
	t.Parallel()
	idp, d := newRig(t)
	d.Sink.SetDataError(&smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "sink says later"})
	c, err := smtp.DialStartTLS(d.SubmissionAddr, d.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(newTwoStep(xoauth2.NewClient("hank@example.test", idp.MintAccessToken("hank@example.test", testTokenTTL)))); err != nil {
		t.Fatal(err)
	}
	err = c.SendMail("hank@example.test", []string{"ivy@example.test"}, bytes.NewReader(crlf("Subject: x", "", "x")))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code/100 != 4 {
		t.Fatalf("send with a failing relay = %v, want a 4xx SMTP error", err)
	}
	t.Logf("submission reply to a relay failure: %d %v %s", se.Code, se.EnhancedCode, se.Message)
	if n := len(d.Sink.Messages()); n != 0 {
		t.Errorf("sink stored %d messages", n)
	}
}

// BenchmarkStartStop measures a full rig start (certificates, config, sink,
// Dovecot greeting on every port) and its shutdown.
func BenchmarkStartStop(b *testing.B) {
	key := []byte("benchmark-signing-key-0123456789")
	for b.Loop() {
		d, err := Start(Options{JWTKey: key})
		if errors.Is(err, ErrUnavailable) {
			b.Skip(err)
		}
		if err != nil {
			b.Fatal(err)
		}
		if err := d.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRestartOnTakenPort: when a port was taken while Dovecot was down,
// Restart says so (Start would pick new ports), and works once it is free.
func TestRestartOnTakenPort(t *testing.T) {
	t.Parallel()
	_, d := newRig(t)
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", d.POP3Addr)
	if err != nil {
		t.Fatalf("taking the POP3 port: %v", err)
	}
	err = d.Restart()
	ln.Close()
	if !errors.Is(err, errPortInUse) {
		t.Fatalf("restart with a taken port = %v, want errPortInUse", err)
	}
	if err := d.Restart(); err != nil {
		t.Fatalf("restart after the port was freed: %v", err)
	}
}
