package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/localtls"
	"github.com/xoauthd/xoauthd/internal/testkit"
)

// tlsHost is the name the TLS tests connect to; curl resolves it to the
// rig's loopback addresses (--resolve), so the certificate is checked
// against a host name as a real client would.
const tlsHost = "mail.xoauthd.test"

// curlTLS runs curl for url (scheme://tlsHost:PORT/path) with TLS required
// and only caFile trusted.
func curlTLS(t *testing.T, caFile, scheme, listen, path string, args ...string) (string, error) {
	t.Helper()
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("%s://%s:%s/%s", scheme, tlsHost, port, path)
	base := []string{url, "--ssl-reqd", "--cacert", caFile, "--resolve", tlsHost + ":" + port + ":127.0.0.1"}
	return curl(t, append(base, args...)...)
}

// checkCurlTLS fetches, lists and sends through the rig's three listeners
// with curl, each with TLS required: schemes are the IMAP, POP3 and SMTP
// URL schemes (imap/pop3/smtp with STARTTLS, imaps/pop3s/smtps implicit).
func checkCurlTLS(t *testing.T, r *rig, caFile string, schemes [3]string) {
	user := aliceLogin + ":" + alicePass
	msg := message("tls-"+schemes[0], 1500)
	if err := r.dc.Deliver(alice, msg); err != nil {
		t.Fatal(err)
	}
	t.Run(schemes[0], func(t *testing.T) {
		out, err := curlTLS(t, caFile, schemes[0], r.imap, "", "-u", user)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "INBOX") {
			t.Fatalf("LIST over TLS did not name INBOX:\n%s", out)
		}
		got, err := curlTLS(t, caFile, schemes[0], r.imap, "INBOX;UID=1", "-u", user)
		if err != nil {
			t.Fatal(err)
		}
		if got != string(msg) {
			t.Fatalf("fetched %d bytes over TLS, want the %d delivered bytes", len(got), len(msg))
		}
	})
	t.Run(schemes[1], func(t *testing.T) {
		got, err := curlTLS(t, caFile, schemes[1], r.pop3, "1", "-u", user)
		if err != nil {
			t.Fatal(err)
		}
		if got != string(msg) {
			t.Fatalf("RETR over TLS gave %d bytes, want %d", len(got), len(msg))
		}
	})
	t.Run(schemes[2], func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "msg.eml")
		sent := message("tls-sent-"+schemes[2], 800)
		if err := os.WriteFile(file, sent, 0o600); err != nil {
			t.Fatal(err)
		}
		before := len(r.dc.Sink.Messages())
		if _, err := curlTLS(t, caFile, schemes[2], r.smtp, "", "--mail-from", alice, "--mail-rcpt", bob, "-u", user, "-T", file); err != nil {
			t.Fatal(err)
		}
		got, err := r.dc.Sink.WaitFor(before+1, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(got[len(got)-1].Data), "tls-sent-"+schemes[2]) {
			t.Fatalf("the upstream received another message")
		}
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		other := testkit.NewCA(t).WriteCAFile(t)
		if _, err := curlTLS(t, other, schemes[0], r.imap, "", "-u", user); err == nil {
			t.Fatal("curl accepted a certificate from a CA it does not trust")
		}
	})
}

// TestTLSSelfSignedSTARTTLS: tls: {self_signed: HOST} makes a certificate
// beside the token store; curl with --ssl-reqd upgrades each protocol with
// STARTTLS/STLS, trusting that certificate, through the daemon to Dovecot.
func TestTLSSelfSignedSTARTTLS(t *testing.T) {
	requireCurl(t)
	r := newRigWith(t, rigOptions{serverYAML: "tls: {self_signed: " + tlsHost + "}"})
	certFile, keyFile := localtls.SelfSignedFiles(r.dir, tlsHost)
	st, err := os.Stat(keyFile)
	if err != nil {
		t.Fatalf("no self-signed key beside the token store: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("self-signed key mode %v, want 0600", st.Mode().Perm())
	}
	if !strings.Contains(r.logs.String(), "made a self-signed TLS certificate") || !strings.Contains(r.logs.String(), "sha256=") {
		t.Errorf("the self-signed certificate and its fingerprint were not logged")
	}
	checkCurlTLS(t, r, certFile, [3]string{"imap", "pop3", "smtp"})

	t.Run("go client", func(t *testing.T) {
		pemBytes, err := os.ReadFile(certFile)
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(pemBytes)
		c, err := imapclient.DialStartTLS(r.imap, &imapclient.Options{TLSConfig: &tls.Config{RootCAs: roots, ServerName: tlsHost}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Login(aliceLogin, alicePass).Wait(); err != nil {
			t.Fatalf("LOGIN after STARTTLS: %v", err)
		}
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		if err := c.Logout().Wait(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestTLSImplicitWithCA: tls: {cert, key, mode: implicit} with a
// certificate from a private CA; curl speaks imaps, pop3s and smtps
// trusting that CA.
func TestTLSImplicitWithCA(t *testing.T) {
	requireCurl(t)
	dir := t.TempDir()
	ca := testkit.NewCA(t)
	caFile := ca.WriteCAFile(t)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := testkit.WriteKeyPair(certFile, keyFile, ca.Leaf(t, tlsHost)); err != nil {
		t.Fatal(err)
	}
	r := newRigWith(t, rigOptions{serverYAML: fmt.Sprintf("tls: {cert: %q, key: %q, mode: implicit}", certFile, keyFile)})
	checkCurlTLS(t, r, caFile, [3]string{"imaps", "pop3s", "smtps"})
	t.Run("plaintext client", func(t *testing.T) {
		// A plaintext client that speaks first gets no greeting: what it
		// sent is no TLS handshake, and the connection is closed.
		for _, addr := range []string{r.imap, r.pop3, r.smtp} {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			if _, err := c.Write([]byte("a LOGIN " + aliceLogin + " x\r\nEHLO x\r\nUSER x\r\n")); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(io.LimitReader(c, 4096))
			c.Close()
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("%s: the connection stayed open", addr)
			}
			// A reset is a close too: the server stops reading.
			if strings.Contains(string(got), "OK") || strings.Contains(string(got), "220") {
				t.Fatalf("%s answered a plaintext client on the implicit-TLS port: %q", addr, got)
			}
		}
	})
}

// TestTLSPlaintextOffLoopbackRefused: a listener on a non-loopback address
// without TLS does not load (a line-numbered problem), unless it sets
// allow_plaintext or has TLS.
func TestTLSPlaintextOffLoopbackRefused(t *testing.T) {
	base := `store:
  path: tokens.json
  key: ${file:store.key}
providers:
  m365: {type: microsoft, tenant: contoso.onmicrosoft.com, client_id: 7d1c7bde-0f1a-4c3e-9a55-5b0f7e3f6a11}
servers:
  - protocol: imap
    listen: 127.0.0.1:1143
  - protocol: smtp
    listen: 0.0.0.0:1587
%s
accounts: []
`
	tests := []struct {
		name, extra string
		problem     string // "" means it loads
	}{
		{"plaintext", "", "servers[1].listen (line 10): \"0.0.0.0:1587\" is not a loopback address and this server has no tls:"},
		{"allow_plaintext", "    allow_plaintext: true", ""},
		{"self-signed TLS", "    tls: {self_signed: mail.contoso.com}", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "xoauthd.yaml")
			if err := os.WriteFile(path, []byte(fmt.Sprintf(base, tt.extra)), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := config.Load(path)
			if tt.problem == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			var ps config.Problems
			if !errors.As(err, &ps) || len(ps) != 1 || !strings.Contains(ps[0].String(), tt.problem) {
				t.Fatalf("Load = %v, want the one problem %q", err, tt.problem)
			}
		})
	}
}
