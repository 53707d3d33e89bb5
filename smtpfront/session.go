package smtpfront

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/proxy"
	"github.com/xoauthd/xoauthd/smtpfront/internal/wire"
)

// Bounds of a session.
const (
	// dataBufSize is the buffer of what go-smtp's reader decodes (a BDAT
	// message, or the start of a DATA message); the message streams
	// through it, never held whole.
	dataBufSize = 32 << 10
	// encBufSize is the buffer of the stuffed message towards the upstream:
	// each write is about half of it (four full TLS records, sent together
	// in starttls mode: recordBatcher).
	encBufSize = 128 << 10
	// maxRedialFailures is the number of failed redials in a row after which
	// the session is closed with 421.
	maxRedialFailures = 3
)

// dataBufs and encBufs recycle the relay's buffers between messages and
// sessions.
var (
	dataBufs = sync.Pool{New: func() any { b := make([]byte, dataBufSize); return &b }}
	encBufs  = sync.Pool{New: func() any { b := make([]byte, encBufSize); return &b }}
)

// session relays one client session to one upstream session. go-smtp calls
// its methods from the connection's goroutine, except Data for BDAT, which
// runs in a goroutine of its own while Reset or Logout may be called: mu
// serialises them all.
//
// After AUTH the session holds one upstream session and one slot of its
// identity until Logout. When the upstream fails (a broken connection, a
// 421), the upstream session is dropped, the client gets a 4xx for the
// command at hand, and the next MAIL dials a new upstream session with a
// fresh token; the slot stays held meanwhile. After maxRedialFailures failed
// redials in a row the session ends with 421.
type session struct {
	srv      *Server
	cc       *clientConn
	maxBytes int64 // the go-smtp server's message size limit (0: none)
	// live is the upstream for the context watcher, which aborts it without
	// taking mu when the session's context ends.
	live      atomic.Pointer[upstream]
	stopWatch func() bool // stops that watcher; called by Logout

	mu  sync.Mutex
	log *slog.Logger // the connection's; with login and identity after AUTH

	// Set by a successful AUTH:
	acct    proxy.Account
	release func()    // gives back the identity's slot; nil before AUTH and after Logout
	up      *upstream // nil between an upstream failure and the next MAIL

	inTx           bool              // a MAIL was accepted upstream and the transaction is open there
	from           string            // the envelope sender of the transaction
	mailOpts       *smtp.MailOptions // its MAIL parameters as relayed upstream
	rcpts          []string          // its recipients the upstream accepted (for realign)
	authFailures   int               // failed AUTH commands
	redialFailures int               // failed redials in a row
	messages       int               // messages the upstream accepted
	bytes          int64
}

func newSession(srv *Server, cc *clientConn) *session {
	s := &session{srv: srv, cc: cc, log: cc.log}
	s.stopWatch = context.AfterFunc(cc.ctx, func() {
		if u := s.live.Load(); u != nil {
			u.abort()
		}
	})
	return s
}

// Mail implements smtp.Session: the envelope sender, relayed upstream. A
// reused upstream session that turns out to be gone (the upstream closed it
// while idle) is replaced once at once: nothing is lost before a MAIL.
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.release == nil {
		if err := s.beginWithoutAuth(); err != nil { // noauth.go
			return err
		}
	}
	if err := s.closedByReload(); err != nil {
		return err
	}
	if s.cc.draining() {
		// This reply is the last one, even when drained has already
		// asked for a goodbye.
		s.cc.hangUp("")
		s.cc.farewellSent.Store(true)
		return replyShuttingDown
	}
	if err := s.pace(); err != nil { // pacing.go
		return err
	}
	s.setTx(false)
	s.from, s.mailOpts, s.rcpts = from, upstreamMailOptions(opts), s.rcpts[:0]
	// The RCPTs (and DATA) the client pipelined behind this MAIL go
	// upstream with it.
	rcpts, data := s.cc.pipelinedEnvelope(s.srv.maxPipelined)
	if opts != nil && opts.Body == smtp.BodyBinaryMIME {
		data = false // go-smtp refuses DATA for it
	}
	var behind []string
	if len(rcpts) > 0 {
		behind = pipelinedCommands(rcpts, data)
	}
	for attempt := 0; ; attempt++ {
		up, dialled, err := s.ensureUpstream()
		if err != nil {
			return err
		}
		if opts != nil && opts.UTF8 && !up.ext.smtputf8 {
			return replyNoSMTPUTF8
		}
		if up.pipelining {
			up.conn.behind = behind
		}
		err = up.c.Mail(from, s.mailOpts)
		up.conn.behind = nil
		if err == nil {
			s.setTx(true)
			return nil
		}
		if attempt == 0 && !dialled && isStale(err) {
			s.discard("upstream session gone while idle, redialling", err)
			continue
		}
		err = s.upstreamFailed("MAIL", err)
		// The RCPTs behind a refused MAIL were answered too.
		if _, derr := s.drainAhead(); derr != nil {
			s.discard("upstream connection lost after a refused MAIL", derr)
		}
		return err
	}
}

// upstreamMailOptions keeps the MAIL parameters the upstream may need:
// SIZE and SMTPUTF8 (go-smtp's client adds BODY=8BITMIME itself when the
// upstream offers it).
func upstreamMailOptions(opts *smtp.MailOptions) *smtp.MailOptions {
	if opts == nil {
		return nil
	}
	return &smtp.MailOptions{Size: opts.Size, UTF8: opts.UTF8}
}

// Rcpt implements smtp.Session: one recipient, relayed upstream.
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.release == nil {
		return replyAuthRequired
	}
	if err := s.closedByReload(); err != nil {
		return err
	}
	if s.up == nil || !s.inTx {
		return replyUpstreamLost
	}
	if next := s.up.conn.nextAhead(); next != "" && next != rcptLine(to) {
		// go-smtp's server refused a recipient that went upstream.
		if err := s.realign("RCPT"); err != nil {
			return err
		}
		if s.up == nil || !s.inTx {
			return replyUpstreamLost
		}
	}
	// When to went upstream behind the MAIL, only its reply is read.
	if err := s.up.c.Rcpt(to, nil); err != nil {
		return s.upstreamFailed("RCPT", err)
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

// Data implements smtp.Session: the message streams to the upstream's DATA,
// and Data returns the upstream's 250 (acceptedReply) only after the
// upstream accepted the message. When the client's data breaks off, the upstream
// connection is dropped rather than finished, so a partial message is never
// submitted.
func (s *session) Data(r io.Reader) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.release == nil {
		return replyAuthRequired
	}
	if s.up == nil || !s.inTx {
		return replyUpstreamLost
	}
	if next := s.up.conn.nextAhead(); next != "" && next != dataLine {
		if err := s.realign("DATA"); err != nil {
			return err
		}
	}
	up := s.up
	if up == nil || !s.inTx {
		return replyUpstreamLost
	}
	// When DATA went upstream with the MAIL, only its reply is read.
	w, err := up.c.Data()
	if err != nil {
		// The transaction stays open upstream: go-smtp's Reset after DATA
		// sends RSET.
		return s.upstreamFailed("DATA", err)
	}
	// A reload or a shutdown that ends the session now lets this message
	// finish. beginData comes before the transaction is marked over, so a
	// drain at this moment sees one or the other, never an idle session.
	s.cc.beginData()
	defer s.cc.endData()
	s.setTx(false) // the final reply ends the transaction, whatever it is
	// The message goes onto the upstream connection under go-smtp's client,
	// stuffed by wire.Encoder; only its final CRLF goes through the client's
	// own DATA writer, which then ends the data and reads the reply.
	meter := s.srv.opts.Gateway.Meter
	bp := encBufs.Get().(*[]byte)
	defer encBufs.Put(bp)
	enc := wire.NewEncoder(up.conn, *bp, func(n int64) { meter.Relayed(proxy.ClientToUpstream, n) })
	n, bulk, rerr := s.readMessage(r, enc)
	if rerr == nil {
		// The last piece and the end of data leave together.
		up.conn.holdWrites()
	}
	tail, werr := enc.Finish()
	switch {
	case rerr != nil:
		s.discard("client data ended early, dropping the unfinished upstream message", rerr)
		var se *smtp.SMTPError
		if errors.As(rerr, &se) {
			return se
		}
		if errors.Is(rerr, smtp.ErrTooLongLine) {
			return replyLineTooLong
		}
		return replyDataAborted
	case werr != nil:
		return s.upstreamFailed("DATA", werr)
	}
	if _, err := w.Write(tail); err != nil {
		return s.upstreamFailed("DATA", err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return s.upstreamFailed("DATA", err)
	}
	s.messages++
	s.bytes += n
	s.srv.pacer.accepted(paceKey(s.acct))
	s.log.Info("message relayed", "bytes", n, "bulk_bytes", bulk, "upstream_reply", proxy.RedactUpstreamText(resp.StatusText))
	return acceptedReply(resp.StatusText)
}

// acceptedReply returns the upstream's 250 to the end of a message as
// go-smtp's server will write it byte for byte, so its queue id reaches the
// client (ERPs log it to trace a message): go-smtp writes an *SMTPError
// that a session's Data returns as it is, a 250 too, instead of its own
// "250 2.0.0 OK: queued". The text is as go-smtp's client read it, the
// enhanced codes still in it, lines joined with "\n". An empty text gets
// go-smtp's own reply.
func acceptedReply(text string) error {
	if text == "" {
		return nil
	}
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.NoEnhancedCode, Message: text}
}

// readMessage reads the client's message from r (go-smtp's DATA or BDAT
// reader) into enc, to its end or the first read error; a write error stays
// in enc and the rest is read but dropped. For DATA it lets the bulk relay
// take over the client stream (datatap.go). n counts message bytes, bulk
// those of them the bulk relay read.
func (s *session) readMessage(r io.Reader, enc *wire.Encoder) (n, bulk int64, err error) {
	if s.cc.armTap(r) {
		defer s.cc.disarmTap()
	}
	bp := dataBufs.Get().(*[]byte)
	defer dataBufs.Put(bp)
	buf := *bp
	for {
		k, err := r.Read(buf)
		if k > 0 {
			enc.Write(buf[:k])
			n += int64(k)
		}
		switch {
		case err == errTapHandoff:
			limit := int64(-1)
			if s.maxBytes > 0 {
				limit = max(s.maxBytes-n, 0)
			}
			m, err := s.cc.relayMessage(enc, limit)
			n += m
			bulk += m
			if err != nil {
				return n, bulk, err
			}
			// go-smtp's reader now reads the end-of-data line and ends.
		case err == io.EOF:
			return n, bulk, nil
		case err != nil:
			return n, bulk, err
		}
	}
}

// Reset implements smtp.Session (RSET, a new EHLO, the end of DATA): an
// open upstream transaction is reset too.
func (s *session) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.drainAhead(); err != nil {
		s.discard("upstream session lost at RSET", err)
	}
	if !s.inTx || s.up == nil {
		s.setTx(false)
		return
	}
	s.setTx(false)
	if err := s.up.c.Reset(); err != nil && isConnectionGone(err) {
		s.discard("upstream session lost at RSET", err)
	}
}

// Logout implements smtp.Session: the client session ended (QUIT, close,
// error). The upstream session quits and the identity's slot is given back
// once the upstream has closed the connection.
func (s *session) Logout() error {
	s.stopWatch()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settleAhead()
	if s.up != nil {
		s.up.quit()
		s.up = nil
		s.live.Store(nil)
	}
	if s.release != nil {
		s.release()
		s.release = nil
		s.log.Info("session closed", "messages", s.messages, "bytes", s.bytes)
	}
	return nil
}

// closedByReload returns the reply that ends a session a reload closed (its
// account was removed or its password changed), nil otherwise. The caller
// holds mu.
func (s *session) closedByReload() error {
	if proxy.SessionClosed(s.cc.ctx) == nil {
		return nil
	}
	// This reply is the 421: the next read ends the session without
	// writing another.
	s.cc.hangUp("")
	s.cc.farewellSent.Store(true)
	return replyAccountChanged
}

// ensureUpstream returns the session's upstream, dialling a new one after a
// failure (dialled says so). The caller holds mu.
func (s *session) ensureUpstream() (up *upstream, dialled bool, err error) {
	if s.up != nil {
		return s.up, false, nil
	}
	ctx, cancel := context.WithTimeout(s.cc.ctx, loginTimeout)
	defer cancel()
	up, err = s.srv.connect(ctx, s.acct)
	if err != nil {
		s.redialFailures++
		attrs := []any{"err", err, "failures_in_a_row", s.redialFailures}
		if text, ok := why(err, s.account()); ok {
			attrs = append(attrs, "why", text)
		}
		s.log.Warn("opening a new upstream session failed", attrs...)
		if s.redialFailures >= maxRedialFailures {
			s.cc.hangUp("")
			return nil, false, replyUpstreamUnavailableClosing
		}
		return nil, false, replyUpstreamUnavailable
	}
	s.redialFailures = 0
	s.setUpstream(up)
	s.log.Info("new upstream session", "upstream", up.addr)
	return up, true, nil
}

func (s *session) setUpstream(up *upstream) {
	s.up = up
	s.live.Store(up)
	if s.cc.ctx.Err() != nil {
		up.abort()
	}
}

// discard drops the upstream session after a failure; the next MAIL dials
// a new one. The caller holds mu.
func (s *session) discard(why string, err error) {
	if s.up == nil {
		return
	}
	s.log.Warn(why, "upstream", s.up.addr, "err", err)
	s.up.abort()
	s.up = nil
	s.live.Store(nil)
	s.setTx(false)
}

// setTx records whether a transaction is open, for the session and for the
// drain (clientConn.inTx). The caller holds mu.
func (s *session) setTx(open bool) {
	s.inTx = open
	s.cc.inTx.Store(open)
}

// upstreamFailed turns an upstream failure of cmd into the client's reply:
// the upstream's own reply unchanged (code, enhanced code, text) when it
// sent one, else 451 4.4.2. A broken connection or a 421 drops the upstream
// session. The log line adds the cause and fix when the reply is a known
// one. The caller holds mu.
func (s *session) upstreamFailed(cmd string, err error) error {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		s.discard("upstream connection lost during "+cmd, err)
		return replyUpstreamLost
	}
	attrs := []any{"cmd", cmd, "code", se.Code, "enhanced", enhancedString(se.EnhancedCode), "text", proxy.RedactUpstreamText(se.Message)}
	if text, ok := why(se, s.account()); ok {
		attrs = append(attrs, "why", proxy.RedactUpstreamText(text))
	}
	s.log.Warn("upstream refused", attrs...)
	if se.Code == 421 {
		s.discard("upstream closed the session", errors.New(proxy.RedactUpstreamText(err.Error())))
	}
	if limited := s.upstreamLimited(se); limited != nil { // pacing.go
		return limited
	}
	return passThrough(se)
}

// passThrough returns the upstream's reply as go-smtp's server will write
// it byte for byte: go-smtp's client strips the enhanced code from each
// line and its server would put it on the last line only (or invent X.0.0
// when there was none), so the code goes back into the text of every line.
func passThrough(se *smtp.SMTPError) *smtp.SMTPError {
	out := &smtp.SMTPError{Code: se.Code, EnhancedCode: smtp.NoEnhancedCode, Message: se.Message}
	if se.EnhancedCode != smtp.EnhancedCodeNotSet && se.EnhancedCode != smtp.NoEnhancedCode {
		prefix := enhancedString(se.EnhancedCode) + " "
		out.Message = prefix + strings.ReplaceAll(se.Message, "\n", "\n"+prefix)
	}
	return out
}

// isConnectionGone reports whether an upstream session is unusable after
// err: a broken connection or a 421 (the upstream closes the channel).
func isConnectionGone(err error) bool {
	var se *smtp.SMTPError
	return !errors.As(err, &se) || se.Code == 421
}

// isStale reports whether a reused upstream session refused MAIL because it
// is no longer usable: gone, or no longer authenticated ("530", as after an
// upstream that forgets the login on the EHLO go-smtp's client sends after
// RSET). A new session is worth one try.
func isStale(err error) bool {
	var se *smtp.SMTPError
	return isConnectionGone(err) || errors.As(err, &se) && se.Code == 530
}

func enhancedString(c smtp.EnhancedCode) string {
	if c == smtp.EnhancedCodeNotSet || c == smtp.NoEnhancedCode {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", c[0], c[1], c[2])
}
