package imapfront

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/xoauthd/xoauthd/internal/diagnose"
	"github.com/xoauthd/xoauthd/internal/xoauth2"
	"github.com/xoauthd/xoauthd/proxy"
)

// Bounds of what the upstream may send during login.
const (
	// upstreamBufSize is the size of the upstream reader, and so the longest
	// response line accepted during login.
	upstreamBufSize = 16 * 1024
	// maxUpstreamLiteral bounds a literal in an untagged response during
	// login (skipped, never stored).
	maxUpstreamLiteral = 64 * 1024
	// maxUpstreamResponse bounds one response during login, its lines and
	// literals together.
	maxUpstreamResponse = 256 * 1024
	// maxUpstreamResponses bounds the untagged responses read while waiting
	// for one tagged reply.
	maxUpstreamResponses = 1000
	// maxChallenges bounds the continuation requests of one AUTHENTICATE:
	// the prompt of the two-step form and the error challenge.
	maxChallenges = 2
)

// Exchange Online texts (see the package documentation).
const (
	notConnectedText = "User is authenticated but not connected"
	tokenExpiredText = "AccessTokenExpired"
)

// errNotConnected means the upstream accepted the token but cannot open the
// mailbox with it (Exchange's "User is authenticated but not connected").
var errNotConnected = fmt.Errorf("upstream accepted the token but cannot open the mailbox: %w", proxy.ErrUpstreamDenied)

// upstream is a logged-in upstream connection.
type upstream struct {
	conn net.Conn
	br   *bufio.Reader // may hold untagged data sent after the last reply
	caps string        // post-login capabilities, space separated; may be empty
}

// Upstream is a logged-in IMAP upstream connection.
type Upstream struct {
	// Conn is the connection, TLS after STARTTLS; the caller closes it.
	Conn net.Conn
	// Reader reads Conn; it may hold responses sent after the last reply
	// of the login.
	Reader *bufio.Reader
	// Capabilities are the upstream's capabilities after the login.
	Capabilities []string
}

// LoginOptions adjust LoginUpstream. The zero value is usable.
type LoginOptions struct {
	// Tag is the tag of AUTHENTICATE (the proxy uses its client's);
	// empty means "A1".
	Tag string
	// Log receives the debug line about an error challenge; nil discards it.
	Log *slog.Logger
	// Trace, when set, wraps the connection for the protocol trace; the
	// returned Conn is never the wrapper.
	Trace func(net.Conn) net.Conn
}

// LoginUpstream is the IMAP upstream login: on conn, a fresh connection
// from d, it reads the greeting, runs STARTTLS in starttls mode,
// AUTHENTICATE XOAUTH2 as acct.Mailbox (with SASL-IR when offered; an error
// challenge gets the empty response), CAPABILITY when the OK carried none,
// and the LIST "" "" probe that shows Exchange's "authenticated but not
// connected" before anyone is told OK. It is the login that serve runs for
// every client, and that "xoauthd check" and the benchmark run too.
//
// An error wraps proxy.ErrUpstreamRejected when the upstream refused the
// token and proxy.ErrUpstreamUnavailable when it failed otherwise; it
// carries the upstream's reply as a *diagnose.Reply and the stage that
// failed (proxy.StageOf). conn is closed on any error.
func LoginUpstream(ctx context.Context, conn net.Conn, d *proxy.Dialer, acct proxy.Account, token string, opts LoginOptions) (*Upstream, error) {
	if opts.Tag == "" {
		opts.Tag = "A1"
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	up, err := loginUpstreamTraced(opts.Tag, opts.Log, opts.Trace)(ctx, conn, d, acct, token)
	if err != nil {
		return nil, err
	}
	return &Upstream{Conn: up.conn, Reader: up.br, Capabilities: strings.Fields(up.caps)}, nil
}

// loginUpstream returns the proxy.LoginFunc that logs in to the IMAP
// upstream with AUTHENTICATE XOAUTH2 under the client's tag.
func loginUpstream(tag string, log *slog.Logger) proxy.LoginFunc[*upstream] {
	return loginUpstreamTraced(tag, log, nil)
}

// loginUpstreamTraced is loginUpstream with the upstream dialogue read and
// written through trace (nil: no trace), which wraps a connection for the
// protocol trace; the returned upstream's conn is never the wrapper.
func loginUpstreamTraced(tag string, log *slog.Logger, trace func(net.Conn) net.Conn) proxy.LoginFunc[*upstream] {
	return func(ctx context.Context, conn net.Conn, d *proxy.Dialer, acct proxy.Account, token string) (*upstream, error) {
		u := &upLogin{tag: tag, log: log, trace: trace}
		u.use(conn)
		up, err := u.run(ctx, d, acct, token)
		if err != nil {
			_ = u.conn.Close()
			return nil, err
		}
		return up, nil
	}
}

// upLogin is one upstream login attempt.
type upLogin struct {
	conn  net.Conn      // replaced by the TLS connection after STARTTLS
	rw    net.Conn      // conn, or its trace wrapper; all reads and writes
	br    *bufio.Reader // reads rw
	tag   string        // the client's tag, used for AUTHENTICATE
	log   *slog.Logger
	trace func(net.Conn) net.Conn // wraps conn for the protocol trace; nil: none
	seq   int                     // last internal tag number
}

// use makes conn the upstream connection (again after STARTTLS).
func (u *upLogin) use(conn net.Conn) {
	u.conn, u.rw = conn, conn
	if u.trace != nil {
		u.rw = u.trace(conn)
	}
	u.br = bufio.NewReaderSize(u.rw, upstreamBufSize)
}

// run speaks greeting, STARTTLS (if the mode asks for it), AUTHENTICATE
// XOAUTH2, CAPABILITY when the OK carried none, and the mailbox probe.
func (u *upLogin) run(ctx context.Context, d *proxy.Dialer, acct proxy.Account, token string) (*upstream, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(upstreamLoginTimeout)
	}
	if err := u.conn.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("setting upstream deadline: %w", proxy.ErrUpstreamUnavailable)
	}
	conn := u.conn
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()

	caps, err := u.greeting()
	if err != nil {
		return nil, proxy.AtStage(proxy.StageGreeting, err)
	}
	if d != nil && d.Mode == proxy.TLSStartTLS {
		if err := u.startTLS(ctx, d); err != nil {
			return nil, proxy.AtStage(proxy.StageStartTLS, err)
		}
		caps = nil // capabilities before TLS do not count
	}
	postCaps, err := u.authenticate(acct.Mailbox, token, hasCap(caps, "SASL-IR"))
	if err != nil {
		return nil, proxy.AtStage(proxy.StageLogin, err)
	}
	if postCaps, err = u.probe(postCaps); err != nil {
		return nil, proxy.AtStage(proxy.StageMailbox, err)
	}
	if !stop() {
		return nil, fmt.Errorf("logging in upstream: %w", ctx.Err())
	}
	if err := u.conn.SetDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("clearing upstream deadline: %w", proxy.ErrUpstreamUnavailable)
	}
	return &upstream{conn: u.conn, br: u.br, caps: strings.Join(postCaps, " ")}, nil
}

// nextTag returns an internal tag that differs from the client's.
func (u *upLogin) nextTag() string {
	for {
		u.seq++
		if t := "xo" + strconv.Itoa(u.seq); t != u.tag {
			return t
		}
	}
}

// greeting reads the upstream's greeting and returns its capabilities when
// it lists them.
func (u *upLogin) greeting() ([]string, error) {
	line, err := u.readResponse()
	if err != nil {
		return nil, err
	}
	status, rest, _ := strings.Cut(strings.TrimPrefix(line, "* "), " ")
	switch {
	case !strings.HasPrefix(line, "* "):
		return nil, fmt.Errorf("upstream greeting %q is not IMAP: %w", truncate(line), proxy.ErrUpstreamUnavailable)
	case strings.EqualFold(status, "OK"):
		code, args, _ := responseCode(rest)
		if code == "CAPABILITY" {
			return args, nil
		}
		return nil, nil
	case strings.EqualFold(status, "PREAUTH"):
		return nil, errors.New("upstream greeted with PREAUTH (logged in without a token): " +
			"check that the upstream address is the provider's IMAP server")
	case strings.EqualFold(status, "BYE"):
		return nil, fmt.Errorf("upstream refused the connection: %w: %w", upstreamReply(line), proxy.ErrUpstreamUnavailable)
	}
	return nil, fmt.Errorf("upstream greeting %q is not IMAP: %w", truncate(line), proxy.ErrUpstreamUnavailable)
}

// startTLS runs STARTTLS (RFC 3501 §6.2.1) and the verified handshake.
func (u *upLogin) startTLS(ctx context.Context, d *proxy.Dialer) error {
	tag := u.nextTag()
	if err := u.send(tag + " STARTTLS"); err != nil {
		return err
	}
	status, text, _, err := u.awaitTagged(tag, nil)
	if err != nil {
		return err
	}
	if status != "OK" {
		return fmt.Errorf("upstream refused STARTTLS: %s %s: %w", status, truncate(text), proxy.ErrUpstreamUnavailable)
	}
	if u.br.Buffered() > 0 {
		// Bytes sent before the handshake would be read as if protected.
		return fmt.Errorf("upstream sent data after its STARTTLS reply: %w", proxy.ErrUpstreamUnavailable)
	}
	tc, err := d.StartTLS(ctx, u.conn)
	if err != nil {
		return err
	}
	u.use(tc)
	return nil
}

// authenticate sends AUTHENTICATE XOAUTH2 under the client's tag, with the
// initial response (RFC 4959) when the upstream announced SASL-IR and after
// a continuation otherwise. An error challenge is answered with an empty
// line (never "="). It returns the capabilities of the tagged OK, if any.
func (u *upLogin) authenticate(mailbox, token string, saslIR bool) ([]string, error) {
	b64 := xoauth2.Encode(mailbox, token)
	cmd := u.tag + " AUTHENTICATE " + xoauth2.Mechanism
	if saslIR {
		cmd += " " + b64
		b64 = ""
	}
	if err := u.send(cmd); err != nil {
		return nil, err
	}
	var caps []string
	challenges := 0
	onUntagged := func(line string) error {
		if strings.HasPrefix(line, "+") {
			if challenges++; challenges > maxChallenges {
				return fmt.Errorf("upstream sent too many continuations during AUTHENTICATE: %w", proxy.ErrUpstreamUnavailable)
			}
			if b64 != "" { // the two-step form's prompt
				resp := b64
				b64 = ""
				return u.send(resp)
			}
			u.logChallenge(line)
			return u.send("")
		}
		if c, ok := untaggedCaps(line); ok {
			caps = c
		}
		return nil
	}
	status, text, code, err := u.awaitTagged(u.tag, onUntagged)
	if err != nil {
		return nil, err
	}
	reply := upstreamReply(u.tag + " " + status + " " + text)
	switch {
	case status == "OK":
		if c, args, _ := responseCode(text); c == "CAPABILITY" {
			caps = args
		}
		return caps, nil
	case status == "NO" && code == "UNAVAILABLE":
		return nil, fmt.Errorf("upstream login: %w: %w", reply, proxy.ErrUpstreamUnavailable)
	case status == "NO":
		return nil, fmt.Errorf("upstream login: %w: %w", reply, proxy.ErrUpstreamRejected)
	}
	return nil, fmt.Errorf("upstream refused AUTHENTICATE XOAUTH2: %w", reply)
}

// logChallenge logs the status of an XOAUTH2 error challenge.
func (u *upLogin) logChallenge(line string) {
	ch, err := xoauth2.DecodeChallenge(strings.TrimSpace(strings.TrimPrefix(line, "+")))
	if err != nil {
		u.log.Debug("upstream xoauth2 challenge", "err", err)
		return
	}
	u.log.Debug("upstream xoauth2 challenge", "status", ch.Status, "scope", ch.Scope)
}

// probe gets the post-login capabilities when the OK had none and sends a
// cheap LIST "" "" (pipelined with it) so that Exchange's "authenticated but
// not connected" shows up before the client is told OK. The responses to
// both stay here; anything after the last reply stays in u.br for the relay.
func (u *upLogin) probe(caps []string) ([]string, error) {
	var capTag string
	var cmds string
	if len(caps) == 0 {
		capTag = u.nextTag()
		cmds = capTag + " CAPABILITY\r\n"
	}
	listTag := u.nextTag()
	cmds += listTag + ` LIST "" ""` + "\r\n"
	if _, err := io.WriteString(u.rw, cmds); err != nil {
		return nil, fmt.Errorf("writing to upstream: %w: %w", err, proxy.ErrUpstreamUnavailable)
	}
	onUntagged := func(line string) error {
		if c, ok := untaggedCaps(line); ok {
			caps = c
		}
		return nil // LIST output and anything else is not the client's
	}
	for _, tag := range []string{capTag, listTag} {
		if tag == "" {
			continue
		}
		status, text, _, err := u.awaitTagged(tag, onUntagged)
		if err != nil {
			return nil, err
		}
		if status == "OK" {
			continue
		}
		reply := upstreamReply(tag + " " + status + " " + text)
		if strings.Contains(text, notConnectedText) {
			return nil, fmt.Errorf("after the login: %w: %w", reply, errNotConnected)
		}
		return nil, fmt.Errorf("upstream refused a command after the login: %w: %w", reply, proxy.ErrUpstreamUnavailable)
	}
	return caps, nil
}

// awaitTagged reads responses until the one tagged tag and returns its
// status (upper case), its text and its response code. Untagged responses
// and continuation requests go to onUntagged (nil: ignored). A BYE ends the
// login: for an expired token it wraps proxy.ErrUpstreamRejected so the
// token is refreshed and the login retried.
func (u *upLogin) awaitTagged(tag string, onUntagged func(string) error) (status, text, code string, err error) {
	for range maxUpstreamResponses {
		line, err := u.readResponse()
		if err != nil {
			return "", "", "", err
		}
		if rest, ok := strings.CutPrefix(line, tag+" "); ok {
			status, text, _ = strings.Cut(rest, " ")
			status = strings.ToUpper(status)
			if status != "OK" && status != "NO" && status != "BAD" {
				return "", "", "", fmt.Errorf("upstream reply %q is not IMAP: %w", truncate(line), proxy.ErrUpstreamUnavailable)
			}
			code, _, _ = responseCode(text)
			return status, text, code, nil
		}
		if err := u.checkBye(line); err != nil {
			return "", "", "", err
		}
		if !strings.HasPrefix(line, "* ") && !strings.HasPrefix(line, "+") {
			return "", "", "", fmt.Errorf("upstream response %q is not IMAP: %w", truncate(line), proxy.ErrUpstreamUnavailable)
		}
		if onUntagged != nil {
			if err := onUntagged(line); err != nil {
				return "", "", "", err
			}
		}
	}
	return "", "", "", fmt.Errorf("upstream sent more than %d responses without a reply: %w", maxUpstreamResponses, proxy.ErrUpstreamUnavailable)
}

// checkBye returns the error for an untagged BYE.
func (u *upLogin) checkBye(line string) error {
	rest, ok := strings.CutPrefix(line, "* ")
	if !ok {
		return nil
	}
	status, text, _ := strings.Cut(rest, " ")
	if !strings.EqualFold(status, "BYE") {
		return nil
	}
	if strings.Contains(text, tokenExpiredText) {
		return fmt.Errorf("upstream ended the login (the token had expired): %w: %w", upstreamReply(line), proxy.ErrUpstreamRejected)
	}
	return fmt.Errorf("upstream ended the login: %w: %w", upstreamReply(line), proxy.ErrUpstreamUnavailable)
}

// send writes one line to the upstream.
func (u *upLogin) send(line string) error {
	if _, err := io.WriteString(u.rw, line+"\r\n"); err != nil {
		return fmt.Errorf("writing to upstream: %w: %w", err, proxy.ErrUpstreamUnavailable)
	}
	return nil
}

// readResponse reads one response and returns its first line without CRLF.
// Literals in it are skipped with the lines that follow them.
func (u *upLogin) readResponse() (string, error) {
	first, err := u.readLine()
	if err != nil {
		return "", err
	}
	line := first
	size := int64(len(first))
	for {
		n, ok := responseLiteral(line)
		if !ok {
			return first, nil
		}
		if n > maxUpstreamLiteral {
			return "", fmt.Errorf("upstream literal of %d bytes during login: %w", n, proxy.ErrUpstreamUnavailable)
		}
		if size += n; size > maxUpstreamResponse {
			return "", fmt.Errorf("upstream response larger than %d bytes during login: %w", maxUpstreamResponse, proxy.ErrUpstreamUnavailable)
		}
		if _, err := u.br.Discard(int(n)); err != nil {
			return "", fmt.Errorf("reading upstream: %w: %w", err, proxy.ErrUpstreamUnavailable)
		}
		if line, err = u.readLine(); err != nil {
			return "", err
		}
		size += int64(len(line))
	}
}

// readLine reads one line (bounded by upstreamBufSize) without CRLF.
func (u *upLogin) readLine() (string, error) {
	b, err := u.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return "", fmt.Errorf("upstream line longer than %d bytes: %w", upstreamBufSize, proxy.ErrUpstreamUnavailable)
		}
		return "", fmt.Errorf("reading upstream: %w: %w", err, proxy.ErrUpstreamUnavailable)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// responseLiteral reports whether line ends with a literal announcement
// "{n}" (or "{n+}") and its length.
func responseLiteral(line string) (int64, bool) {
	if !strings.HasSuffix(line, "}") {
		return 0, false
	}
	i := strings.LastIndexByte(line, '{')
	if i < 0 {
		return 0, false
	}
	digits := strings.TrimSuffix(line[i+1:len(line)-1], "+")
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n < 0 || digits == "" || digits[0] == '+' {
		return 0, false
	}
	return n, true
}

// responseCode splits "[CODE args] text" (RFC 3501 §7.1) into the upper-case
// code, its space-separated arguments and the text.
func responseCode(text string) (code string, args []string, rest string) {
	inner, ok := strings.CutPrefix(text, "[")
	if !ok {
		return "", nil, text
	}
	inner, rest, ok = strings.Cut(inner, "]")
	if !ok {
		return "", nil, text
	}
	fields := strings.Fields(inner)
	if len(fields) == 0 {
		return "", nil, strings.TrimSpace(rest)
	}
	return strings.ToUpper(fields[0]), validAtoms(fields[1:]), strings.TrimSpace(rest)
}

// untaggedCaps returns the capabilities of an untagged CAPABILITY response.
func untaggedCaps(line string) ([]string, bool) {
	fields := strings.Fields(line)
	if len(fields) < 2 || fields[0] != "*" || !strings.EqualFold(fields[1], "CAPABILITY") {
		return nil, false
	}
	return validAtoms(fields[2:]), true
}

// validAtoms keeps the words that are IMAP atoms, so that what the client is
// sent stays well-formed whatever the upstream wrote.
func validAtoms(words []string) []string {
	out := words[:0:0]
	for _, w := range words {
		ok := w != ""
		for i := 0; i < len(w) && ok; i++ {
			ok = isAtomChar(w[i], false) && w[i] < 0x80
		}
		if ok {
			out = append(out, w)
		}
	}
	return out
}

// hasCap reports whether caps holds name (case-insensitive).
func hasCap(caps []string, name string) bool {
	for _, c := range caps {
		if strings.EqualFold(c, name) {
			return true
		}
	}
	return false
}

// upstreamReply returns an upstream status response as a *diagnose.Reply,
// the form in which the log explains it (diagnose.Explain finds it in the
// error chain), or an error quoting a line that is no status response.
func upstreamReply(line string) error {
	if r, err := diagnose.ParseIMAP(line); err == nil {
		return r
	}
	return fmt.Errorf("upstream sent %q", truncate(line))
}

// maxQuoted bounds upstream text quoted in errors and logs.
const maxQuoted = 200

// truncate shortens upstream text for errors and logs.
func truncate(s string) string {
	if len(s) > maxQuoted {
		return s[:maxQuoted] + "..."
	}
	return s
}
