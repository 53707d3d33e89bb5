package check

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/diagnose"
	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/proxy"
)

// TestCheckStartTLS runs IMAP and POP3 upstreams in starttls mode.
func TestCheckStartTLS(t *testing.T) {
	t.Parallel()
	pki := testkit.NewPKI(t)
	e := newCheckEnv(t)
	imapSrv := fakeIMAP(t, nil, imapScript{startTLS: pki.Server, exists: 4})
	popSrv := fakePOP3(t, nil, pop3Script{startTLS: pki.Server})
	e.server("imap", imapSrv.addr(), pki.CAFile, "upstream_tls: starttls")
	e.server("pop3", popSrv.addr(), pki.CAFile, "upstream_tls: starttls")
	e.account("erp-alice", checkAlice, "")
	e.write()
	e.login(checkAlice)
	r := e.report("")
	if !r.OK {
		t.Fatalf("report %+v", r)
	}
	for _, name := range []string{"imap", "pop3"} {
		if s := step(t, r, name); s.Status != StatusPass || !strings.HasPrefix(s.TLS, "TLS 1.") {
			t.Errorf("%s step %+v", name, s)
		}
	}
}

// TestCheckClientCredentials checks an app-only account: no login, a token
// with application permissions, the mailbox as user=.
func TestCheckClientCredentials(t *testing.T) {
	t.Parallel()
	pki := testkit.NewPKI(t)
	e := newCheckEnv(t)
	e.clientCredentials()
	imapSrv := fakeIMAP(t, pki.Server, imapScript{exists: 1})
	e.server("imap", imapSrv.addr(), pki.CAFile, "")
	e.account("erp-app", checkShared, "")
	e.write()
	r := e.report("")
	tok := step(t, r, "token")
	if !r.OK || !strings.HasPrefix(tok.Summary, "app-only token (client credentials) issued; valid until ") ||
		!slices.Contains(tok.Scopes, "IMAP.AccessAsApp") || tok.Expiry.IsZero() {
		t.Fatalf("ok %v, token step %+v", r.OK, tok)
	}
	if u := imapSrv.seen(); !slices.Equal(u, []string{checkShared}) {
		t.Errorf("imap user= %v", u)
	}
}

// endlessServer is a TLS server that greets with greeting and then writes
// chunk forever, until the client goes away.
func endlessServer(t *testing.T, pki *testkit.PKI, greeting, chunk string) string {
	return newScriptServer(t, pki.Server, func(_ *scriptServer, c net.Conn, r *bufio.Reader) {
		go func() { _, _ = r.ReadString(0) }() // swallow whatever the client sends
		if _, err := c.Write([]byte(greeting)); err != nil {
			return
		}
		buf := []byte(strings.Repeat(chunk, max(1, 32<<10/len(chunk))))
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}).addr()
}

// TestCheckWireLimits feeds endless input to every read of the probes.
func TestCheckWireLimits(t *testing.T) {
	t.Parallel()
	pki := testkit.NewPKI(t)
	tests := []struct {
		name     string
		greeting string
		chunk    string
		probe    func(ctx context.Context, d *proxy.Dialer) error
		want     string
	}{
		{"endless imap line", "", "x", imapProbe, "longer than"},
		{"endless imap responses", "* OK ready\r\n", "* 1 EXISTS\r\n", imapProbe, "more than"},
		{"endless imap literal", "* OK ready\r\n", "* LIST () \"/\" {999999999}\r\n", imapProbe, "literal of 999999999 bytes"},
		{"endless literal continuation", "* OK ready\r\n", "* LIST () \"/\" {1}\r\nx", imapProbe, "larger than"},
		{"endless imap challenges", "* OK [CAPABILITY IMAP4rev1 SASL-IR] ready\r\n", "+ \r\n", imapProbe, "too many continuations"},
		{"endless pop3 line", "", "+", pop3Probe, "line too long"},
		{"endless pop3 challenges", "+OK\r\n", "+ \r\n", pop3Probe, "answered the empty response"},
		{"endless smtp reply", "", "220-x\r\n", smtpProbe, "during login"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr := endlessServer(t, pki, tt.greeting, tt.chunk)
			d, err := proxy.NewDialer(addr, proxy.TLSImplicit, pki.CAFile)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err = tt.probe(ctx, d)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func imapProbe(ctx context.Context, d *proxy.Dialer) error {
	_, err := probeIMAP(ctx, d, checkAlice, "token")
	return err
}

func pop3Probe(ctx context.Context, d *proxy.Dialer) error {
	_, err := probePOP3(ctx, d, checkAlice, "token")
	return err
}

func smtpProbe(ctx context.Context, d *proxy.Dialer) error {
	c := New(Options{StepTimeout: 30 * time.Second})
	_, err := c.probeSMTP(ctx, d, testAccount(), "token")
	return err
}

// TestCheckProbeCancelled checks that a silent server does not hold a probe
// past its context.
func TestCheckProbeCancelled(t *testing.T) {
	t.Parallel()
	pki := testkit.NewPKI(t)
	silent := newScriptServer(t, pki.Server, func(_ *scriptServer, _ net.Conn, r *bufio.Reader) {
		_, _ = r.ReadString(0)
	})
	d, err := proxy.NewDialer(silent.addr(), proxy.TLSImplicit, pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- imapProbe(ctx, d) }()
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Error("no error from a cancelled probe")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the probe ignored its context")
	}
}

func TestWrap(t *testing.T) {
	tests := []struct {
		text  string
		width int
		want  []string
	}{
		{"", 10, []string{""}},
		{"a b c", 10, []string{"a b c"}},
		{"aaaa bbbb cccc", 9, []string{"aaaa bbbb", "cccc"}},
		{"averyveryverylongword x", 5, []string{"averyveryverylongword", "x"}},
		{"run `xoauthd login a@b.c` now", 20, []string{"run `xoauthd login", "a@b.c` now"}},
		{"run `xoauthd login a@b.c` now", 22, []string{"run", "`xoauthd login a@b.c`", "now"}},
		{"unclosed `quote goes on", 30, []string{"unclosed `quote goes on"}},
		{"✓ ünïcode wörds", 8, []string{"✓", "ünïcode", "wörds"}},
		{"\x1b[31mred\x1b[0m text", 8, []string{"\x1b[31mred\x1b[0m text"}},
	}
	for _, tt := range tests {
		got := wrap(tt.text, tt.width)
		if !slices.Equal(got, tt.want) {
			t.Errorf("wrap(%q, %d) = %q, want %q", tt.text, tt.width, got, tt.want)
		}
		for _, l := range got {
			if visibleLen(l) > tt.width && strings.Contains(l, " ") {
				t.Errorf("wrap(%q, %d): line %q too long", tt.text, tt.width, l)
			}
		}
	}
}

func TestLiteralSize(t *testing.T) {
	tests := []struct {
		line string
		n    int64
		ok   bool
	}{
		{"* LIST () \"/\" {5}", 5, true},
		{"* LIST () \"/\" {5+}", 5, true},
		{"* OK {x}", 0, false},
		{"* OK {}", 0, false},
		{"* OK {+}", 0, false},
		{"* OK {-1}", 0, false},
		{"* OK {++1}", 0, false},
		{"* OK no literal", 0, false},
		{"}", 0, false},
	}
	for _, tt := range tests {
		if n, ok := literalSize(tt.line); n != tt.n || ok != tt.ok {
			t.Errorf("literalSize(%q) = %d, %v; want %d, %v", tt.line, n, ok, tt.n, tt.ok)
		}
	}
}

func TestReadClaims(t *testing.T) {
	payload := `{"aud":["https://graph.microsoft.com"],"scp":"IMAP.AccessAsUser.All Mail.Read","exp":1700000000}`
	tok := "e30." + b64url(payload) + ".sig"
	c, ok := readClaims(tok)
	if !ok || !c.graph() || !slices.Equal(c.scopes(), []string{"IMAP.AccessAsUser.All", "Mail.Read"}) || c.Exp != 1700000000 {
		t.Errorf("claims %+v, ok %v", c, ok)
	}
	for _, bad := range []string{"", "opaque-token", "a.b", "a.!!!.c", "a." + b64url("not json") + ".c",
		"a." + strings.Repeat("A", maxJWTPayload+1) + ".c"} {
		if _, ok := readClaims(bad); ok {
			t.Errorf("readClaims(%q) ok", bad)
		}
	}
	if c, _ := readClaims("e30." + b64url(`{"aud":"https://outlook.office.com"}`) + ".s"); c.graph() {
		t.Error("outlook audience taken for Graph")
	}
}

func b64url(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// FuzzReadIMAPLine feeds arbitrary server output to the IMAP response
// reader and the status check.
func FuzzReadIMAPLine(f *testing.F) {
	f.Add([]byte("* OK [CAPABILITY IMAP4rev1 SASL-IR] ready\r\n"))
	f.Add([]byte("* LIST () \"/\" {3}\r\nabc\r\nA1 OK done\r\n"))
	f.Add([]byte("* LIST () \"/\" {3+}\r\nab"))
	f.Add([]byte("A1 NO AUTHENTICATE failed.\r\n"))
	f.Add([]byte("* BYE Session invalidated - AccessTokenExpired\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tc := &textConn{r: bufio.NewReaderSize(bytes.NewReader(data), maxCheckLine)}
		for range 100 {
			line, err := tc.readIMAPLine()
			if err != nil {
				return
			}
			if len(line) > 2*maxCheckLine {
				t.Fatalf("line of %d bytes", len(line))
			}
			_, _ = imapTagged(line, "A1")
			_ = imapExists([]string{line})
		}
	})
}

func testAccount() config.Account {
	return config.Account{Login: "erp-alice", Identity: checkAlice, Mailbox: checkAlice}
}

func TestCheckColour(t *testing.T) {
	five := 5
	r := Report{Config: "/etc/xoauthd/xoauthd.yaml", Accounts: []AccountReport{{
		Login: "erp-billing", Identity: "billing@contoso.com", Mailbox: "billing@contoso.com", Provider: "m365",
		Steps: []Step{
			{Name: "config", Status: StatusPass, Summary: "provider m365 (microsoft, authcode flow); identity billing@contoso.com; mailbox billing@contoso.com"},
			{Name: "imap", Status: StatusPass, Summary: "outlook.office365.com:993 (TLS 1.3): XOAUTH2 as billing@contoso.com; mailbox reachable; INBOX has 5 messages", Messages: &five},
			{Name: "pop3", Status: StatusSkip, Summary: "skipped: no pop3 server in the configuration"},
			{Name: "smtp", Status: StatusFail, Summary: "smtp.office365.com:587: AUTH XOAUTH2 as billing@contoso.com failed",
				Problem: &diagnose.Explanation{Code: "535 5.7.139", Cause: "SMTP AUTH is disabled for this tenant",
					Fix: "An admin enables it with `Set-TransportConfig -SmtpClientAuthenticationDisabled $false`; allow 15–60 minutes."},
				Reply: "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant."},
		},
	}}}
	var buf bytes.Buffer
	WriteText(&buf, r, true)
	out := buf.String()
	for _, want := range []string{ansiGreen + "✓" + ansiReset, ansiRed + "✗" + ansiReset, ansiYellow + "–" + ansiReset, ansiBold + "erp-billing"} {
		if !strings.Contains(out, want) {
			t.Errorf("coloured output lacks %q:\n%s", want, out)
		}
	}
	for _, l := range strings.Split(out, "\n") {
		if visibleLen(l) > checkWidth {
			t.Errorf("line of %d columns: %q", visibleLen(l), l)
		}
	}
}
