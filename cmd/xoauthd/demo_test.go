package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/xoauthd/xoauthd/internal/testkit"
)

// demoTimeout bounds each wait of the demo command tests.
const demoTimeout = 30 * time.Second

func TestDemoUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // on stderr
	}{
		{"port too large", []string{"demo", "--imap", "70000"}, "--imap 70000 is not a port"},
		{"negative port", []string{"demo", "--smtp", "-1"}, "--smtp -1 is not a port"},
		{"host name", []string{"demo", "--listen-host", "mail.example.com"}, "is not an IP address"},
		{"argument", []string{"demo", "now"}, `unexpected argument "now"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runIn(t, "", tt.args...)
			if code != exitUsage || out != "" {
				t.Errorf("exit %d, stdout %q; want %d and nothing", code, out, exitUsage)
			}
			if !strings.Contains(errOut, tt.want) || !strings.Contains(errOut, "Usage: xoauthd demo") {
				t.Errorf("stderr = %q, want %q and the usage", errOut, tt.want)
			}
		})
	}
	code, out, _ := runIn(t, "", "demo", "--help")
	if code != exitOK || !strings.Contains(out, "-listen-host HOST") || !strings.Contains(out, "-imap PORT") {
		t.Errorf("demo --help: exit %d, stdout %q", code, out)
	}
}

// TestDemoCommand runs "xoauthd demo" on free ports, logs in at the IMAP
// address it prints, interrupts it, and checks exit status 0 and that its
// temporary directory is gone.
func TestDemoCommand(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	stderr := &testkit.SyncBuffer{}
	exit := make(chan int, 1)
	go func() {
		code := run(ctx, []string{"demo", "--imap", "0", "--pop3", "0", "--smtp", "0"}, strings.NewReader(""), pw, stderr)
		_ = pw.Close()
		exit <- code
	}()
	out := testkit.ReadUntil(t, pr, "Press Ctrl-C", demoTimeout)
	go func() { _, _ = io.Copy(io.Discard, pr) }()

	imapAddr := regexp.MustCompile(`(?m)^  IMAP +(\S+)`).FindStringSubmatch(out)
	cfgPath := regexp.MustCompile(`The configuration in use is (.+);`).FindStringSubmatch(out)
	if imapAddr == nil || cfgPath == nil {
		t.Fatalf("no IMAP address or configuration path in the output:\n%s", out)
	}
	if !strings.Contains(out, "curl imap://"+imapAddr[1]+"/ -u demo:demo") {
		t.Errorf("the curl commands do not use the IMAP address %s:\n%s", imapAddr[1], out)
	}
	c, err := imapclient.DialInsecure(imapAddr[1], nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login("demo", "demo").Wait(); err != nil {
		t.Errorf("IMAP login as demo/demo at %s: %v\nstderr:\n%s", imapAddr[1], err, stderr.String())
	}
	_ = c.Close()

	cancel() // what Ctrl-C does
	select {
	case code := <-exit:
		if code != exitOK {
			t.Errorf("exit %d after the interrupt, want 0; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(demoTimeout):
		t.Fatal("xoauthd demo did not stop after the interrupt")
	}
	if _, err := os.Stat(filepath.Dir(cfgPath[1])); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the demo directory is left after exit: %v", err)
	}
	if log := stderr.String(); !strings.Contains(log, "msg=listening") || !strings.Contains(log, "demo stopped") {
		t.Errorf("stderr lacks the listener and stop lines:\n%s", log)
	}
}
