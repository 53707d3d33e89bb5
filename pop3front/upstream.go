package pop3front

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/xoauthd/xoauthd/internal/diagnose"
	"github.com/xoauthd/xoauthd/internal/xoauth2"
	"github.com/xoauthd/xoauthd/proxy"
)

// Limits of the upstream login.
const (
	// maxUpstreamLine bounds a line read from the upstream during login, CRLF
	// included. RFC 2449 §4 limits responses to 512 octets; the headroom is
	// for a long error challenge.
	maxUpstreamLine = 2048
	// upstreamLoginTimeout bounds the upstream dialogue from the greeting to
	// the final reply, within the caller's context.
	upstreamLoginTimeout = 30 * time.Second
	// maxQuoted bounds how much of an upstream reply goes into an error.
	maxQuoted = 160
)

// upstream is a logged-in upstream connection.
type upstream struct {
	conn net.Conn      // TLS, logged in
	r    *bufio.Reader // holds whatever the upstream sent after its +OK
}

// Upstream is a logged-in POP3 upstream connection, in the transaction
// state.
type Upstream struct {
	// Conn is the connection, TLS after STLS; the caller closes it.
	Conn net.Conn
	// Reader reads Conn; it may hold what the upstream sent after its +OK.
	Reader *bufio.Reader
}

// LoginOptions adjust LoginUpstream. The zero value is usable.
type LoginOptions struct {
	// Trace, when set, wraps the connection for the protocol trace; the
	// returned Conn is never the wrapper.
	Trace func(net.Conn) net.Conn
}

// LoginUpstream is the POP3 upstream login (see loginUpstream) that serve
// runs for every client, and that "xoauthd check" and the benchmark run
// too. An error wraps proxy.ErrUpstreamRejected when the upstream refused
// the token and proxy.ErrUpstreamUnavailable when it failed otherwise; it
// carries the upstream's reply as a *diagnose.Reply and the stage that
// failed (proxy.StageOf). conn is closed on any error.
func LoginUpstream(ctx context.Context, conn net.Conn, d *proxy.Dialer, acct proxy.Account, token string, opts LoginOptions) (*Upstream, error) {
	up, err := loginUpstreamTraced(ctx, conn, d, acct, token, opts.Trace)
	if err != nil {
		return nil, err
	}
	return &Upstream{Conn: up.conn, Reader: up.r}, nil
}

// loginUpstream is the proxy.LoginFunc of POP3: it reads the greeting, sends
// STLS in starttls mode, and logs in with AUTH XOAUTH2 in the two-line form
// (the initial response on its own line after "+ "): Exchange requires it,
// and RFC 5034 §4 forbids an initial response that makes the command longer
// than 255 octets, which a token always does. user= is the account's mailbox
// (its identity when no mailbox is set). It closes conn on any error.
func loginUpstream(ctx context.Context, conn net.Conn, d *proxy.Dialer, acct proxy.Account, token string) (*upstream, error) {
	return loginUpstreamTraced(ctx, conn, d, acct, token, nil)
}

// loginUpstreamTraced is loginUpstream with the upstream dialogue read and
// written through trace (nil: no trace), which wraps a connection for the
// protocol trace; the returned upstream's conn is never the wrapper.
func loginUpstreamTraced(ctx context.Context, conn net.Conn, d *proxy.Dialer, acct proxy.Account, token string, trace func(net.Conn) net.Conn) (up *upstream, err error) {
	u := &upstreamConn{trace: trace}
	u.use(conn)
	defer func() {
		if err != nil {
			_ = u.conn.Close()
		}
	}()
	deadline := time.Now().Add(upstreamLoginTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("%w: setting upstream deadline: %w", proxy.ErrUpstreamUnavailable, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()

	if err := u.greeting(); err != nil {
		return nil, proxy.AtStage(proxy.StageGreeting, err)
	}
	if d.Mode == proxy.TLSStartTLS {
		if err := u.startTLS(ctx, d); err != nil {
			return nil, proxy.AtStage(proxy.StageStartTLS, err)
		}
	}
	mailbox := acct.Mailbox
	if mailbox == "" {
		mailbox = acct.Identity
	}
	if err := u.authenticate(mailbox, token); err != nil {
		return nil, proxy.AtStage(proxy.StageLogin, err)
	}
	if !stop() {
		return nil, fmt.Errorf("%w: logging in upstream: %w", proxy.ErrUpstreamUnavailable, ctx.Err())
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("%w: clearing upstream deadline: %w", proxy.ErrUpstreamUnavailable, err)
	}
	return &upstream{conn: u.conn, r: u.r}, nil
}

// upstreamConn is the upstream during login.
type upstreamConn struct {
	conn  net.Conn                // TCP, or TLS after STLS
	rw    net.Conn                // conn, or its trace wrapper; all reads and writes
	r     *bufio.Reader           // reads rw; maxUpstreamLine bytes
	trace func(net.Conn) net.Conn // wraps conn for the protocol trace; nil: none
}

// use makes conn the upstream connection (again after STLS).
func (u *upstreamConn) use(conn net.Conn) {
	u.conn, u.rw = conn, conn
	if u.trace != nil {
		u.rw = u.trace(conn)
	}
	u.r = bufio.NewReaderSize(u.rw, maxUpstreamLine)
}

// greeting reads the server greeting, which must be +OK (RFC 1939 §4).
func (u *upstreamConn) greeting() error {
	line, err := u.readLine("greeting")
	if err != nil {
		return err
	}
	if !isOK(line) {
		return fmt.Errorf("%w: upstream greeting %s", proxy.ErrUpstreamUnavailable, quote(line))
	}
	return nil
}

// startTLS sends STLS (RFC 2595 §4) and upgrades the connection.
func (u *upstreamConn) startTLS(ctx context.Context, d *proxy.Dialer) error {
	if err := u.send("STLS\r\n", "STLS"); err != nil {
		return err
	}
	line, err := u.readLine("STLS")
	if err != nil {
		return err
	}
	if !isOK(line) {
		return fmt.Errorf("%w: upstream answered STLS with %s (hint: use upstream_tls: implicit with port 995)",
			proxy.ErrUpstreamUnavailable, quote(line))
	}
	if u.r.Buffered() > 0 {
		// Plaintext sent before the handshake would be read as if protected.
		return fmt.Errorf("%w: upstream sent data after its STLS reply", proxy.ErrUpstreamUnavailable)
	}
	tc, err := d.StartTLS(ctx, u.conn)
	if err != nil {
		return fmt.Errorf("%w: %w", proxy.ErrUpstreamUnavailable, err)
	}
	u.use(tc)
	return nil
}

// authenticate runs AUTH XOAUTH2. On an error challenge it answers with an
// empty line, as the mechanism requires, and reads the final -ERR.
func (u *upstreamConn) authenticate(mailbox, token string) error {
	if err := u.send("AUTH XOAUTH2\r\n", "AUTH XOAUTH2"); err != nil {
		return err
	}
	line, err := u.readLine("AUTH XOAUTH2")
	if err != nil {
		return err
	}
	if !isContinuation(line) {
		// Not about the token: the upstream does not offer XOAUTH2 or is busy.
		return fmt.Errorf("%w: upstream answered AUTH XOAUTH2 with %s (hint: the upstream must offer SASL XOAUTH2)",
			errUnavailableUnlessERR(line), quote(line))
	}
	if err := u.send(xoauth2.Encode(mailbox, token)+"\r\n", "the XOAUTH2 response"); err != nil {
		return err
	}
	if line, err = u.readLine("the XOAUTH2 response"); err != nil {
		return err
	}
	switch {
	case isOK(line):
		return nil
	case !isContinuation(line):
		return refused(line, "")
	}
	status := "unreadable"
	if ch, err := xoauth2.DecodeChallenge(strings.TrimPrefix(line, "+")); err == nil {
		status = ch.Status
	}
	if err := u.send("\r\n", "the empty response to the error challenge"); err != nil {
		return err
	}
	final, err := u.readLine("the empty response to the error challenge")
	if err != nil {
		return err
	}
	if !isERR(final) {
		return fmt.Errorf("%w: upstream answered the empty response with %s", proxy.ErrUpstreamUnavailable, quote(final))
	}
	return refused(final, status)
}

// send writes one protocol line; what names it in an error (never the line,
// which may carry the token).
func (u *upstreamConn) send(line, what string) error {
	if _, err := io.WriteString(u.rw, line); err != nil {
		return fmt.Errorf("%w: sending %s: %w", proxy.ErrUpstreamUnavailable, what, err)
	}
	return nil
}

// readLine reads one bounded reply line; after names the command it answers.
func (u *upstreamConn) readLine(after string) (string, error) {
	line, err := readLine(u.r)
	if err != nil {
		return "", fmt.Errorf("%w: reading the reply to %s: %w", proxy.ErrUpstreamUnavailable, after, err)
	}
	return string(line), nil
}

// refused classifies the upstream's final -ERR to the XOAUTH2 response.
// [SYS/TEMP], [IN-USE] and [LOGIN-DELAY] (RFC 2449 §8, RFC 3206) are not
// about the token; [SYS/PERM] is not either but will not pass by itself;
// anything else is a rejection of the token. status is the error challenge's
// status when there was one.
func refused(line, status string) error {
	if !isERR(line) {
		return fmt.Errorf("%w: upstream answered the XOAUTH2 response with %s", proxy.ErrUpstreamUnavailable, quote(line))
	}
	challenge := ""
	if status != "" {
		challenge = " after an error challenge with status " + status
	}
	reply := upstreamReply(line)
	switch code := respCode(line); {
	case code == "SYS/TEMP" || code == "IN-USE" || code == "LOGIN-DELAY":
		return fmt.Errorf("%w: upstream refused the login for now%s: %w", proxy.ErrUpstreamUnavailable, challenge, reply)
	case code == "SYS/PERM":
		return fmt.Errorf("upstream reported a permanent system error%s: %w", challenge, reply)
	default:
		return fmt.Errorf("%w%s: %w", proxy.ErrUpstreamRejected, challenge, reply)
	}
}

// upstreamReply returns an upstream status line as a *diagnose.Reply, the
// form in which the log explains it (diagnose.Explain finds it in the error
// chain), or an error quoting a line that is no status line.
func upstreamReply(line string) error {
	if r, err := diagnose.ParsePOP3(line); err == nil {
		return r
	}
	return fmt.Errorf("upstream sent %s", quote(line))
}

// errUnavailableUnlessERR returns the error a non-continuation answer to AUTH
// XOAUTH2 wraps: a protocol violation or a temporary refusal is unavailable;
// a plain -ERR (mechanism not offered) is a configuration problem.
func errUnavailableUnlessERR(line string) error {
	if isERR(line) {
		switch respCode(line) {
		case "SYS/TEMP", "IN-USE", "LOGIN-DELAY":
			return proxy.ErrUpstreamUnavailable
		}
		return errNoXOAUTH2
	}
	return proxy.ErrUpstreamUnavailable
}

// errNoXOAUTH2 means the upstream refused the AUTH XOAUTH2 command itself.
var errNoXOAUTH2 = errors.New("upstream does not accept AUTH XOAUTH2")

// respCode returns the upper-cased response code of an -ERR line (RFC 2449
// §8: "-ERR [CODE] text"), or "".
func respCode(line string) string {
	rest, ok := strings.CutPrefix(line, "-ERR [")
	if !ok {
		return ""
	}
	code, _, ok := strings.Cut(rest, "]")
	if !ok {
		return ""
	}
	return strings.ToUpper(code)
}

func isOK(line string) bool  { return line == "+OK" || strings.HasPrefix(line, "+OK ") }
func isERR(line string) bool { return line == "-ERR" || strings.HasPrefix(line, "-ERR ") }

// isContinuation reports a SASL continuation, "+ " with an optional
// challenge; a bare "+" is accepted too (Microsoft's sample shows one).
func isContinuation(line string) bool { return line == "+" || strings.HasPrefix(line, "+ ") }

// quote renders an upstream reply for an error message, bounded.
func quote(line string) string {
	if len(line) > maxQuoted {
		return fmt.Sprintf("%q...", line[:maxQuoted])
	}
	return fmt.Sprintf("%q", line)
}
