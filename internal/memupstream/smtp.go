package memupstream

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/mail"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// SMTP upstream limits.
const (
	// DefaultMaxMessageBytes is the largest message the SMTP upstream
	// accepts when SMTPOptions.MaxMessageBytes is zero (Exchange Online's
	// default send limit is about this size).
	DefaultMaxMessageBytes = 35 << 20
	// maxSMTPLine bounds a command line; the XOAUTH2 response line holds
	// a whole access token.
	maxSMTPLine = 16 << 10
	// maxSMTPRecipients bounds RCPT TO per message.
	maxSMTPRecipients = 100
	// smtpReadTimeout ends a silent session.
	smtpReadTimeout = 10 * time.Minute
	// smtpWriteTimeout bounds writing one reply.
	smtpWriteTimeout = time.Minute
)

// SMTPOptions configure an SMTP upstream. The zero value is usable.
type SMTPOptions struct {
	// Addr is the listen address; empty means "127.0.0.1:0".
	Addr string
	// Domain is the name in the greeting and in Received; empty means
	// ServerName.
	Domain string
	// MaxMessageBytes is the SIZE limit; zero means DefaultMaxMessageBytes.
	MaxMessageBytes int64
}

// SMTP is a running SMTP submission upstream over the mailboxes of a
// Server: ESMTP (RFC 5321) with STARTTLS (RFC 3207) using the Server's
// certificate, SMTPUTF8 (RFC 6531) as Exchange Online and Gmail offer it,
// and AUTH (RFC 4954) with SASL XOAUTH2 only, checked by the
// Server's Options.Validate and offered only after STARTTLS. Both forms
// work: the response on the AUTH line, or after an empty "334 ". A
// rejected token gets the JSON error challenge, then 535 5.7.3 as
// Exchange Online answers.
//
// Each accepted message is delivered, with Return-Path and Received
// prepended, into the INBOX of every recipient who is a user of the Server
// (addresses compare case-insensitively). A recipient who is not a user is
// refused at RCPT with 550 5.1.1: nothing leaves the process, and the client
// learns at once that the address is unknown here. The envelope sender is
// not checked against the token (no Send As rules).
type SMTP struct {
	srv    *Server
	smtp   *smtp.Server
	ln     net.Listener
	domain string
	served chan struct{} // closed when Serve has returned
	queued atomic.Uint64 // messages accepted, for their queue ids
}

// StartSMTP starts an SMTP upstream on s's users, mailboxes, certificate
// and token check.
func (s *Server) StartSMTP(opts SMTPOptions) (*SMTP, error) {
	ln, err := listen(opts.Addr, "listening for smtp")
	if err != nil {
		return nil, err
	}
	u := &SMTP{srv: s, ln: ln, domain: opts.Domain, served: make(chan struct{})}
	if u.domain == "" {
		u.domain = ServerName
	}
	size := opts.MaxMessageBytes
	if size <= 0 {
		size = DefaultMaxMessageBytes
	}
	u.smtp = smtp.NewServer(smtp.BackendFunc(u.newSession))
	u.smtp.Domain = u.domain
	u.smtp.TLSConfig = s.ServerTLS()
	u.smtp.MaxMessageBytes = size
	u.smtp.EnableSMTPUTF8 = true
	u.smtp.MaxLineLength = maxSMTPLine
	u.smtp.MaxRecipients = maxSMTPRecipients
	u.smtp.ReadTimeout = smtpReadTimeout
	u.smtp.WriteTimeout = smtpWriteTimeout
	u.smtp.ErrorLog = smtpLogger{log: s.logger()}
	go func() {
		defer close(u.served)
		_ = u.smtp.Serve(ln)
	}()
	return u, nil
}

// Addr returns the host:port the SMTP upstream listens on.
func (u *SMTP) Addr() string { return u.ln.Addr().String() }

// Close stops the SMTP upstream and ends every session.
func (u *SMTP) Close() error {
	err := u.smtp.Close()
	// go-smtp closes only the listeners Serve has registered: one that has
	// not started yet would accept for ever.
	_ = u.ln.Close()
	<-u.served
	if err != nil && !errors.Is(err, smtp.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("closing the smtp upstream: %w", err)
	}
	return nil
}

func (u *SMTP) newSession(c *smtp.Conn) (smtp.Session, error) {
	return &smtpSession{up: u, conn: c}, nil
}

// smtpSession is one SMTP connection.
type smtpSession struct {
	up   *SMTP
	conn *smtp.Conn

	user string   // set by a successful AUTH
	from string   // set by MAIL, cleared by Reset
	rcpt []string // the users to deliver to; set by RCPT, cleared by Reset
}

var _ smtp.AuthSession = (*smtpSession)(nil)

// Replies of the SMTP upstream.
var (
	errSMTPAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0},
		Message: "Authentication required"}
	errSMTPAuthFailed = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 3},
		Message: "Authentication unsuccessful"}
	errSMTPMechanism = &smtp.SMTPError{Code: 504, EnhancedCode: smtp.EnhancedCode{5, 5, 4},
		Message: "Unrecognized authentication type"}
	errSMTPBadAddress = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3},
		Message: "Invalid address"}
	errSMTPNoRecipients = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 5, 1},
		Message: "No valid recipients"}
	errSMTPDelivery = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message: "Delivery failed, try again later"}
)

// AuthMechanisms lists XOAUTH2; go-smtp offers it only after STARTTLS.
func (sess *smtpSession) AuthMechanisms() []string { return []string{mechanism} }

// Auth returns the XOAUTH2 server.
func (sess *smtpSession) Auth(mech string) (sasl.Server, error) {
	if !strings.EqualFold(mech, mechanism) {
		return nil, errSMTPMechanism
	}
	return &smtpXOAUTH2{sess: sess}, nil
}

// Mail starts a transaction.
func (sess *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	if sess.user == "" {
		return errSMTPAuthRequired
	}
	sess.from = from
	return nil
}

// Rcpt accepts a recipient who is a user of the server.
func (sess *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if sess.user == "" {
		return errSMTPAuthRequired
	}
	addr, err := mail.ParseAddress("<" + to + ">")
	if err != nil {
		return errSMTPBadAddress
	}
	user, ok := sess.up.srv.findUser(addr.Address)
	if !ok {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1},
			Message: fmt.Sprintf("<%s>: Recipient address rejected: no such mailbox here (this server delivers only to its own users)", addr.Address)}
	}
	sess.rcpt = append(sess.rcpt, user)
	return nil
}

// Data delivers the message into each recipient's INBOX.
func (sess *smtpSession) Data(r io.Reader) error {
	if sess.user == "" {
		return errSMTPAuthRequired
	}
	if len(sess.rcpt) == 0 {
		return errSMTPNoRecipients
	}
	var msg bytes.Buffer
	fmt.Fprintf(&msg, "Return-Path: <%s>\r\n", sess.from)
	fmt.Fprintf(&msg, "Received: from %s by %s (memupstream) with ESMTPSA; %s\r\n",
		heloName(sess.conn), sess.up.domain, time.Now().Format(time.RFC1123Z))
	if _, err := io.Copy(&msg, r); err != nil {
		return err // go-smtp answers a message over the size limit itself
	}
	for _, user := range sess.rcpt {
		if err := sess.up.srv.Append(user, "INBOX", msg.Bytes()); err != nil {
			sess.up.srv.logger().Debug("smtp delivery failed", "component", "memupstream", "err", err)
			return errSMTPDelivery
		}
	}
	return queuedReply(sess.up.queued.Add(1))
}

// queuedReply is the reply to an accepted message, with a queue id as real
// servers give one ("250 2.0.0 Ok: queued as 4F2A1C", Postfix's words):
// go-smtp's server writes a 250 *SMTPError as it is.
func queuedReply(n uint64) error {
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0},
		Message: fmt.Sprintf("Ok: queued as MEM%06X", n)}
}

// Reset ends the transaction.
func (sess *smtpSession) Reset() {
	sess.from, sess.rcpt = "", nil
}

// Logout ends the session.
func (sess *smtpSession) Logout() error { return nil }

// heloName is the client's EHLO name, sanitised for a header.
func heloName(c *smtp.Conn) string {
	name := strings.Map(func(r rune) rune {
		if r <= ' ' || r >= 0x7f || r == '(' || r == ')' || r == ';' {
			return -1
		}
		return r
	}, c.Hostname())
	if name == "" {
		return "unknown"
	}
	return name
}

// findUser returns the user whose name is address, compared
// case-insensitively.
func (s *Server) findUser(address string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[address]; ok {
		return address, true
	}
	for name := range s.users {
		if strings.EqualFold(name, address) {
			return name, true
		}
	}
	return "", false
}

// smtpXOAUTH2 is the go-sasl server of AUTH XOAUTH2 for SMTP.
type smtpXOAUTH2 struct {
	sess  *smtpSession
	state int // stateStart, stateResponse or stateFailed
}

// Next handles one client response.
func (x *smtpXOAUTH2) Next(resp []byte) (challenge []byte, done bool, err error) {
	switch x.state {
	case stateStart:
		if resp == nil { // no initial response: an empty "334 "
			x.state = stateResponse
			return nil, false, nil
		}
	case stateFailed:
		return nil, false, errSMTPAuthFailed
	}
	srv := x.sess.up.srv
	user, token, err := parseResponse(resp)
	if err != nil {
		return nil, false, errSMTPAuthFailed
	}
	if srv.validate(user, token) != nil {
		x.state = stateFailed
		return srv.errorChallenge(), false, nil
	}
	x.sess.user = user
	return nil, true, nil
}

// smtpLogger adapts slog to smtp.Logger.
type smtpLogger struct{ log *slog.Logger }

// Printf logs at debug level.
func (l smtpLogger) Printf(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "component", "memupstream")
}

// Println logs at debug level.
func (l smtpLogger) Println(args ...any) {
	l.log.Debug(strings.TrimSuffix(fmt.Sprintln(args...), "\n"), "component", "memupstream")
}
