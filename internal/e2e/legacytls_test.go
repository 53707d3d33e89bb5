package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/testkit"
)

// opensslTimeout bounds one openssl s_client run.
const opensslTimeout = 60 * time.Second

// tls10Negotiated is what s_client prints after a TLS 1.0 handshake that
// agreed on a cipher suite ("Cipher is (NONE)" when it failed).
const tls10Negotiated = "New, TLSv1.0, Cipher is "

// requireOpenSSL returns the path of the openssl command line tool.
func requireOpenSSL(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl is needed by the legacy TLS tests: apt-get install openssl")
	}
	return p
}

// tls10Client runs OpenSSL's s_client as a client that speaks only TLS 1.0
// (as .NET Framework's SmtpClient does), with the security level lowered
// so that OpenSSL 3 allows it, against addr: STARTTLS for protocol
// starttls ("imap", "pop3", "smtp"), implicit TLS when it is "". It sends
// input once the handshake is done and returns everything s_client wrote.
func tls10Client(t *testing.T, addr, starttls, input string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opensslTimeout)
	defer cancel()
	args := []string{"s_client", "-connect", addr, "-tls1", "-cipher", "DEFAULT@SECLEVEL=0", "-crlf", "-ign_eof"}
	if starttls != "" {
		args = append(args, "-starttls", starttls)
	}
	cmd := exec.CommandContext(ctx, requireOpenSSL(t), args...)
	cmd.Stdin = strings.NewReader(input)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// legacyDialogues are, per protocol, what the TLS 1.0 client sends after
// the handshake (a login and a command that needs the upstream) and what
// the answer must hold.
func legacyDialogues() [3]struct{ input, want string } {
	plain := base64.StdEncoding.EncodeToString([]byte("\x00" + aliceLogin + "\x00" + alicePass))
	return [3]struct{ input, want string }{
		{"a LOGIN " + aliceLogin + " \"" + alicePass + "\"\nb SELECT INBOX\nc LOGOUT\n", "b OK"},
		{"USER " + aliceLogin + "\nPASS " + alicePass + "\nSTAT\nQUIT\n", "+OK 0 0"},
		{"EHLO erp.contoso.test\nAUTH PLAIN " + plain + "\nQUIT\n", "235 "},
	}
}

// TestTLSLegacyClients: with tls.min_version "1.0" a client that speaks
// only TLS 1.0 logs in over STARTTLS and over implicit TLS on each of the
// three listeners, through to Dovecot (which the daemon still reaches over
// TLS 1.2 or later); the start is logged with a warning.
func TestTLSLegacyClients(t *testing.T) {
	for _, mode := range []string{"starttls", "implicit"} {
		t.Run(mode, func(t *testing.T) {
			r := newRigWith(t, rigOptions{serverYAML: `tls: {self_signed: ` + tlsHost + `, mode: ` + mode + `, min_version: "1.0"}`})
			if !strings.Contains(r.logs.String(), "level=WARN msg=\""+r.imap+" accepts TLS 1.0") {
				t.Errorf("no warning about TLS 1.0 at start:\n%s", r.logs)
			}
			starttls := [3]string{"imap", "pop3", "smtp"}
			for i, addr := range []string{r.imap, r.pop3, r.smtp} {
				proto := starttls[i]
				if mode == "implicit" {
					starttls[i] = ""
				}
				t.Run(proto, func(t *testing.T) {
					d := legacyDialogues()[i]
					out, err := tls10Client(t, addr, starttls[i], d.input)
					if err != nil || !strings.Contains(out, tls10Negotiated) || !strings.Contains(out, d.want) {
						t.Fatalf("TLS 1.0 client: %v, want TLSv1 and %q in:\n%s", err, d.want, out)
					}
				})
			}
			if n := strings.Count(r.logs.String(), "result=success"); n != 3 {
				t.Errorf("%d successful logins logged, want 3", n)
			}
		})
	}
}

// TestTLSLegacyClientRefusedByDefault: without the opt-in a TLS 1.0 client
// gets no session on any listener, and each refusal is logged with the
// cause.
func TestTLSLegacyClientRefusedByDefault(t *testing.T) {
	r := newRigWith(t, rigOptions{serverYAML: `tls: {self_signed: ` + tlsHost + `}`})
	for i, proto := range []string{"imap", "pop3", "smtp"} {
		addr := []string{r.imap, r.pop3, r.smtp}[i]
		t.Run(proto, func(t *testing.T) {
			before := strings.Count(r.logs.String(), "TLS handshake with the client failed")
			out, err := tls10Client(t, addr, proto, legacyDialogues()[i].input)
			if err == nil || strings.Contains(out, tls10Negotiated) {
				t.Fatalf("a TLS 1.0 client got through: %v\n%s", err, out)
			}
			testkit.Eventually(t, 15*time.Second, "the refused handshake to be logged", func() bool {
				return strings.Count(r.logs.String(), "TLS handshake with the client failed") > before
			})
		})
	}
	if logs := r.logs.String(); strings.Contains(logs, "msg=login") {
		t.Errorf("a login was attempted:\n%s", logs)
	}
}
