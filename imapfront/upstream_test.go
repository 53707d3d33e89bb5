package imapfront

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/memupstream"
	"github.com/xoauthd/xoauthd/internal/xoauth2"
	"github.com/xoauthd/xoauthd/proxy"
)

// exchange is one turn of a scripted upstream: read a line (unless
// noRead), compare it with want (a trailing "..." makes it a prefix), then
// write reply.
type exchange struct {
	want  string
	reply string
}

// noRead marks an exchange that only writes (the greeting).
const noRead = "\x00"

// hangUp as a reply closes the upstream connection.
const hangUp = "\x00hang up"

const (
	upTag    = "a"
	upToken  = "T0K3N-7f3a"
	greetIR  = "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] ready\r\n"
	greetRaw = "* OK The Microsoft Exchange IMAP4 service is ready.\r\n"
)

var (
	upAcct     = proxy.Account{Login: testLogin, Identity: testIdentity, Mailbox: "shared@example.com"}
	authIRLine = upTag + " AUTHENTICATE XOAUTH2 " + xoauth2.Encode("shared@example.com", upToken)
	challenge  = "+ eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJtYWlsIn0=\r\n"
)

// scriptResult is what a scripted upstream saw after its script.
type scriptResult struct {
	err    error // a mismatch in the script
	closed bool  // the client closed the connection after the script
}

// scripted runs script on the server end of a loopback connection and
// returns the client end.
func scripted(t *testing.T, script []exchange) (net.Conn, <-chan scriptResult) {
	conn, res, _ := scriptedDone(t, script)
	return conn, res
}

// scriptedDone is scripted, with a channel closed when the script has been
// played (before waiting for the client to close).
func scriptedDone(t *testing.T, script []exchange) (net.Conn, <-chan scriptResult, <-chan struct{}) {
	t.Helper()
	server, client := pipeTCP(t)
	res := make(chan scriptResult, 1)
	played := make(chan struct{})
	go func() {
		defer func() {
			select {
			case <-played:
			default:
				close(played)
			}
		}()
		_ = server.SetDeadline(time.Now().Add(ioTimeout))
		br := bufio.NewReader(server)
		for _, ex := range script {
			if ex.want != noRead {
				l, err := br.ReadString('\n')
				if err != nil {
					res <- scriptResult{err: errors.New("reading, want " + ex.want + ": " + err.Error())}
					return
				}
				l = strings.TrimSuffix(l, "\r\n")
				if p, ok := strings.CutSuffix(ex.want, "..."); !(ok && strings.HasPrefix(l, p)) && l != ex.want {
					res <- scriptResult{err: errors.New("upstream got " + l + ", want " + ex.want)}
					return
				}
			}
			if ex.reply == hangUp {
				close(played)
				server.Close()
				res <- scriptResult{closed: true}
				return
			}
			if _, err := io.WriteString(server, ex.reply); err != nil {
				res <- scriptResult{err: err}
				return
			}
		}
		close(played)
		_, err := br.ReadByte()
		res <- scriptResult{closed: err != nil && errTimeout(err) == nil}
	}()
	return client, res, played
}

// errTimeout returns err when it is a timeout and nil otherwise.
func errTimeout(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return err
	}
	return nil
}

func TestUpstreamLogin(t *testing.T) {
	capsOK := upTag + " OK [CAPABILITY IMAP4rev1 IDLE MOVE] done\r\n"
	listOK := "* LIST (\\Noselect) \"/\" \"\"\r\nxo1 OK LIST completed\r\n"
	tests := []struct {
		name     string
		tag      string
		script   []exchange
		caps     string // the caps the client is sent
		errIs    error  // nil: success
		leftover string // what must stay in the upstream reader
	}{
		{name: "sasl-ir with caps in OK", script: []exchange{
			{noRead, greetIR},
			{authIRLine, capsOK},
			{`xo1 LIST "" ""`, listOK},
		}, caps: "IMAP4rev1 IDLE MOVE"},
		{name: "two steps without caps in greeting", script: []exchange{
			{noRead, greetRaw},
			{"a AUTHENTICATE XOAUTH2", "+ \r\n"},
			{xoauth2.Encode("shared@example.com", upToken), "a OK AUTHENTICATE completed.\r\n"},
			{"xo1 CAPABILITY", ""},
			{`xo2 LIST "" ""`, "* CAPABILITY IMAP4rev1 IDLE\r\nxo1 OK CAPABILITY completed\r\n* LIST () \"/\" {5}\r\nINBOX\r\nxo2 OK LIST done\r\n* 3 EXISTS\r\n"},
		}, caps: "IMAP4rev1 IDLE", leftover: "* 3 EXISTS\r\n"},
		{name: "untagged capability during authenticate", script: []exchange{
			{noRead, greetIR},
			{authIRLine, "* CAPABILITY IMAP4rev1 X-GM-EXT-1\r\na OK Success\r\n"},
			{`xo1 LIST "" ""`, listOK},
		}, caps: "IMAP4rev1 X-GM-EXT-1"},
		{name: "invalid capability words dropped", script: []exchange{
			{noRead, greetIR},
			{authIRLine, "a OK [CAPABILITY IMAP4rev1 B(AD \"Q\" IDLE] ok\r\n"},
			{`xo1 LIST "" ""`, listOK},
		}, caps: "IMAP4rev1 IDLE"},
		{name: "client tag like an internal one", tag: "xo1", script: []exchange{
			{noRead, greetIR},
			{"xo1 AUTHENTICATE XOAUTH2 ...", "xo1 OK [CAPABILITY IMAP4rev1] ok\r\n"},
			{`xo2 LIST "" ""`, "xo2 OK done\r\n"},
		}, caps: "IMAP4rev1"},
		{name: "error challenge answered with an empty line", script: []exchange{
			{noRead, greetIR},
			{authIRLine, challenge},
			{"", "a NO [AUTHENTICATIONFAILED] Invalid credentials\r\n"},
		}, errIs: proxy.ErrUpstreamRejected},
		{name: "microsoft failure", script: []exchange{
			{noRead, greetRaw},
			{"a AUTHENTICATE XOAUTH2", "+ \r\n"},
			{"...", "a NO AUTHENTICATE failed.\r\n"},
		}, errIs: proxy.ErrUpstreamRejected},
		{name: "unavailable", script: []exchange{
			{noRead, greetIR},
			{authIRLine, "a NO [UNAVAILABLE] try later\r\n"},
		}, errIs: proxy.ErrUpstreamUnavailable},
		{name: "token expired bye", script: []exchange{
			{noRead, greetIR},
			{authIRLine, "* BYE Session invalidated - AccessTokenExpired\r\n"},
		}, errIs: proxy.ErrUpstreamRejected},
		{name: "other bye", script: []exchange{
			{noRead, greetIR},
			{authIRLine, "* BYE shutting down\r\n"},
		}, errIs: proxy.ErrUpstreamUnavailable},
		{name: "greeting bye", script: []exchange{
			{noRead, "* BYE too many connections\r\n"},
		}, errIs: proxy.ErrUpstreamUnavailable},
		{name: "greeting not imap", script: []exchange{
			{noRead, "220 smtp.example.com ESMTP\r\n"},
		}, errIs: proxy.ErrUpstreamUnavailable},
		{name: "greeting preauth", script: []exchange{
			{noRead, "* PREAUTH welcome\r\n"},
		}, errIs: errAny},
		{name: "closed during login", script: []exchange{
			{noRead, greetIR},
			{authIRLine, hangUp},
		}, errIs: proxy.ErrUpstreamUnavailable},
		{name: "line too long", script: []exchange{
			{noRead, "* OK " + strings.Repeat("x", upstreamBufSize) + "\r\n"},
		}, errIs: proxy.ErrUpstreamUnavailable},
		{name: "literal too big", script: []exchange{
			{noRead, greetIR},
			{authIRLine, "* X {70000}\r\n"},
		}, errIs: proxy.ErrUpstreamUnavailable},
		{name: "response too big", script: []exchange{
			{noRead, greetIR},
			// Five literals of 64000 bytes in one response: each is
			// allowed, together they pass maxUpstreamResponse.
			{authIRLine, "* X {64000}\r\n" + strings.Repeat(strings.Repeat("y", 64000)+" {64000}\r\n", 4) +
				strings.Repeat("y", 64000) + "\r\n" + capsOK + listOK},
		}, errIs: proxy.ErrUpstreamUnavailable},
		{name: "bad to authenticate", script: []exchange{
			{noRead, greetIR},
			{authIRLine, "a BAD Invalid base64\r\n"},
		}, errIs: errAny},
		{name: "not connected on list", script: []exchange{
			{noRead, greetIR},
			{authIRLine, capsOK},
			{`xo1 LIST "" ""`, "xo1 BAD User is authenticated but not connected.\r\n"},
		}, errIs: errNotConnected},
		{name: "not connected on capability", script: []exchange{
			{noRead, greetIR},
			{authIRLine, "a OK done\r\n"},
			{"xo1 CAPABILITY", ""},
			{`xo2 LIST "" ""`, "xo1 BAD User is authenticated but not connected.\r\n"},
		}, errIs: errNotConnected},
		{name: "bye expired after login", script: []exchange{
			{noRead, greetIR},
			{authIRLine, capsOK},
			{`xo1 LIST "" ""`, "* BYE Session invalidated - AccessTokenExpired\r\n"},
		}, errIs: proxy.ErrUpstreamRejected},
		{name: "list refused otherwise", script: []exchange{
			{noRead, greetIR},
			{authIRLine, capsOK},
			{`xo1 LIST "" ""`, "xo1 NO server busy\r\n"},
		}, errIs: proxy.ErrUpstreamUnavailable},
		{name: "too many continuations", script: []exchange{
			{noRead, greetIR},
			{authIRLine, challenge},
			{"", challenge},
			{"", challenge},
		}, errIs: proxy.ErrUpstreamUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, res := scripted(t, tt.script)
			tag := tt.tag
			if tag == "" {
				tag = upTag
			}
			ctx, cancel := context.WithTimeout(t.Context(), ioTimeout)
			defer cancel()
			up, err := loginUpstream(tag, slog.New(slog.DiscardHandler))(ctx, conn, &proxy.Dialer{Mode: proxy.TLSImplicit}, upAcct, upToken)
			if tt.errIs == nil {
				if err != nil {
					t.Fatalf("login: %v", err)
				}
				if up.caps != tt.caps {
					t.Errorf("caps %q, want %q", up.caps, tt.caps)
				}
				left, _ := up.br.Peek(up.br.Buffered())
				if string(left) != tt.leftover {
					t.Errorf("left in the reader %q, want %q", left, tt.leftover)
				}
				up.conn.Close()
			} else {
				if err == nil {
					t.Fatal("login succeeded, want an error")
				}
				if tt.errIs != errAny && !errors.Is(err, tt.errIs) {
					t.Fatalf("error %v, want %v", err, tt.errIs)
				}
				if tt.errIs == errAny && (errors.Is(err, proxy.ErrUpstreamRejected) || errors.Is(err, errNotConnected)) {
					t.Fatalf("error %v must not be a rejection", err)
				}
				if strings.Contains(err.Error(), upToken) {
					t.Errorf("error names the token: %v", err)
				}
			}
			r := <-res
			if r.err != nil {
				t.Fatal(r.err)
			}
			if tt.errIs != nil && !r.closed {
				t.Error("upstream connection left open after a failed login")
			}
		})
	}
}

// errAny in a test table accepts any error that is not a rejection.
var errAny = errors.New("any error")

// TestUpstreamCancel ends a login that waits for the upstream when the
// context ends.
func TestUpstreamCancel(t *testing.T) {
	conn, res, played := scriptedDone(t, []exchange{{noRead, greetIR}, {authIRLine, ""}})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := loginUpstream(upTag, slog.New(slog.DiscardHandler))(ctx, conn, &proxy.Dialer{}, upAcct, upToken)
		done <- err
	}()
	<-played // the upstream got AUTHENTICATE and stays silent
	cancel()
	if err := <-done; err == nil {
		t.Fatal("login succeeded after cancel")
	}
	if r := <-res; r.err != nil || !r.closed {
		t.Fatalf("upstream after cancel: %+v, want closed", r)
	}
}

// TestUpstreamStartTLS logs in over STARTTLS with a verified certificate.
func TestUpstreamStartTLS(t *testing.T) {
	mem := memupstream.MustStart(t, memupstream.Options{})
	serverTLS := mem.ServerTLS()
	server, client := pipeTCP(t)
	errc := make(chan error, 1)
	go func() {
		errc <- func() error {
			_ = server.SetDeadline(time.Now().Add(ioTimeout))
			if _, err := io.WriteString(server, "* OK [CAPABILITY IMAP4rev1 STARTTLS SASL-IR] hi\r\n"); err != nil {
				return err
			}
			br := bufio.NewReader(server)
			if l, err := br.ReadString('\n'); err != nil || l != "xo1 STARTTLS\r\n" {
				return errors.New("want STARTTLS, got " + l)
			}
			if _, err := io.WriteString(server, "xo1 OK Begin TLS\r\n"); err != nil {
				return err
			}
			tc := tls.Server(server, serverTLS)
			br = bufio.NewReader(tc)
			// The pre-TLS SASL-IR does not count: the two-step form.
			if l, err := br.ReadString('\n'); err != nil || l != "a AUTHENTICATE XOAUTH2\r\n" {
				return errors.New("want two-step AUTHENTICATE, got " + l)
			}
			io.WriteString(tc, "+ \r\n")
			if _, err := br.ReadString('\n'); err != nil {
				return err
			}
			io.WriteString(tc, "a OK [CAPABILITY IMAP4rev1 IDLE] ok\r\n")
			if l, err := br.ReadString('\n'); err != nil || l != "xo2 LIST \"\" \"\"\r\n" {
				return errors.New("want LIST, got " + l)
			}
			_, err := io.WriteString(tc, "xo2 OK done\r\n")
			return err
		}()
	}()
	d := &proxy.Dialer{Addr: "localhost:1", Mode: proxy.TLSStartTLS, TLS: mem.ClientTLS(), HandshakeTimeout: ioTimeout}
	up, err := loginUpstream(upTag, slog.New(slog.DiscardHandler))(t.Context(), client, d, upAcct, upToken)
	if err != nil {
		t.Fatal(err)
	}
	defer up.conn.Close()
	if _, ok := up.conn.(*tls.Conn); !ok {
		t.Errorf("upstream connection is %T, want TLS", up.conn)
	}
	if up.caps != "IMAP4rev1 IDLE" {
		t.Errorf("caps %q", up.caps)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestResponseHelpers(t *testing.T) {
	lits := []struct {
		line string
		n    int64
		ok   bool
	}{
		{"* LIST () \"/\" {5}", 5, true},
		{"* X {0}", 0, true},
		{"* X {5+}", 5, true},
		{"* X {}", 0, false},
		{"* X {+}", 0, false},
		{"* X {-1}", 0, false},
		{"* X {a}", 0, false},
		{"* X 5}", 0, false},
	}
	for _, tt := range lits {
		if n, ok := responseLiteral(tt.line); n != tt.n || ok != tt.ok {
			t.Errorf("responseLiteral(%q) = %d, %v; want %d, %v", tt.line, n, ok, tt.n, tt.ok)
		}
	}
	codes := []struct {
		text, code, args, rest string
	}{
		{"[CAPABILITY IMAP4rev1 IDLE] Logged in", "CAPABILITY", "IMAP4rev1 IDLE", "Logged in"},
		{"[unavailable] later", "UNAVAILABLE", "", "later"},
		{"no code", "", "", "no code"},
		{"[unterminated", "", "", "[unterminated"},
		{"[] x", "", "", "x"},
	}
	for _, tt := range codes {
		code, args, rest := responseCode(tt.text)
		if code != tt.code || strings.Join(args, " ") != tt.args || rest != tt.rest {
			t.Errorf("responseCode(%q) = %q, %q, %q", tt.text, code, args, rest)
		}
	}
}
