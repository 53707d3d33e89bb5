package testupstream

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Limits of the SMTP sink.
const (
	sinkMaxMessageBytes = 64 << 20 // 64 MiB per message (the end-to-end tests send 25 MiB)
	sinkMaxRecipients   = 100
	sinkMaxLineLength   = 2000
	sinkIOTimeout       = 30 * time.Second
)

// SinkMessage is one message the Sink accepted.
type SinkMessage struct {
	From string   // the MAIL FROM reverse path
	To   []string // the RCPT TO forward paths, in order
	Data []byte   // the message exactly as received after DATA (CRLF line ends)
	// QueueID is the id the sink gave the message in its reply to DATA,
	// "250 2.0.0 Ok: queued as QUEUEID", as Postfix words it.
	QueueID string
}

// Sink is an in-process SMTP server on 127.0.0.1 that accepts all mail
// without authentication, delivers each message byte for byte into every
// recipient's Maildir, and keeps a copy. Dovecot's submission service
// relays to it.
type Sink struct {
	// Addr is the host:port the sink listens on.
	Addr string

	srv  *smtp.Server
	ln   net.Listener
	mail *maildir

	mu       sync.Mutex
	msgs     []SinkMessage // accepted messages, in order
	changed  chan struct{} // closed and replaced whenever msgs grows
	dataErr  error         // when set, DATA fails with it (see SetDataError)
	discard  bool          // read messages and count them, keep nothing (see SetDiscard)
	dropped  int           // messages read and dropped in discard mode
	closed   bool
	serveErr chan error // result of Serve, buffered
}

// newSink starts a sink on a free 127.0.0.1 port delivering into mail and
// refusing messages over maxBytes.
func newSink(mail *maildir, maxBytes int64) (*Sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for the smtp sink: %w", err)
	}
	s := &Sink{
		Addr:     ln.Addr().String(),
		ln:       ln,
		mail:     mail,
		changed:  make(chan struct{}),
		serveErr: make(chan error, 1),
	}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &sinkSession{sink: s}, nil
	}))
	srv.Domain = "sink.localhost"
	srv.MaxMessageBytes = maxBytes
	srv.MaxRecipients = sinkMaxRecipients
	srv.MaxLineLength = sinkMaxLineLength
	srv.ReadTimeout = sinkIOTimeout
	srv.WriteTimeout = sinkIOTimeout
	srv.ErrorLog = log.New(io.Discard, "", 0)
	s.srv = srv
	go func() { s.serveErr <- srv.Serve(ln) }()
	return s, nil
}

// Messages returns a copy of every message accepted so far, in order.
func (s *Sink) Messages() []SinkMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cloneMessages(s.msgs)
}

// WaitFor waits until the sink has accepted at least n messages and returns
// them, or fails after timeout.
func (s *Sink) WaitFor(n int, timeout time.Duration) ([]SinkMessage, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		if len(s.msgs) >= n {
			msgs := cloneMessages(s.msgs)
			s.mu.Unlock()
			return msgs, nil
		}
		changed, have := s.changed, len(s.msgs)
		s.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			return nil, fmt.Errorf("smtp sink: got %d of %d messages within %v; check the submission log in dovecot.log", have, n, timeout)
		}
	}
}

// SetDataError makes every following DATA command fail with err (use a
// *smtp.SMTPError for a specific reply, e.g. 451 4.3.0); nil restores
// normal delivery.
func (s *Sink) SetDataError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dataErr = err
}

// SetDiscard switches discard mode: on, the sink still reads each message
// to its end and answers 250, but delivers and keeps nothing, only counts
// (Discarded). For benchmarks: otherwise every message is written to disk
// and kept in memory, and the sink's cost grows through a long run.
func (s *Sink) SetDiscard(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.discard = on
}

// Discarded returns how many messages the sink read and dropped in discard
// mode.
func (s *Sink) Discarded() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// Close stops the sink and closes its connections; it is idempotent.
func (s *Sink) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	err := s.srv.Close()
	// Serve may not have registered the listener with the server yet.
	_ = s.ln.Close()
	if serr := <-s.serveErr; serr != nil && !errors.Is(serr, smtp.ErrServerClosed) && !errors.Is(serr, net.ErrClosed) {
		return fmt.Errorf("smtp sink: %w", serr)
	}
	return err
}

// accept delivers and records one message.
func (s *Sink) accept(m SinkMessage) error {
	s.mu.Lock()
	dataErr := s.dataErr
	s.mu.Unlock()
	if dataErr != nil {
		return dataErr
	}
	for _, rcpt := range m.To {
		if err := s.mail.deliver(rcpt, m.Data); err != nil {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "sink could not store the message"}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m.QueueID = fmt.Sprintf("%08X%02X", time.Now().Unix()&0xffffffff, len(s.msgs)&0xff)
	s.msgs = append(s.msgs, m)
	close(s.changed)
	s.changed = make(chan struct{})
	// go-smtp's server writes a 250 *SMTPError as it is, in place of its
	// own "250 2.0.0 OK: queued".
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + m.QueueID}
}

func cloneMessages(in []SinkMessage) []SinkMessage {
	out := make([]SinkMessage, len(in))
	for i, m := range in {
		out[i] = SinkMessage{From: m.From, To: slices.Clone(m.To), Data: bytes.Clone(m.Data), QueueID: m.QueueID}
	}
	return out
}

// sinkSession is one SMTP session of the sink.
type sinkSession struct {
	sink *Sink
	from string   // set by MAIL
	to   []string // grown by RCPT
}

func (ss *sinkSession) Reset() { ss.from, ss.to = "", nil }

func (ss *sinkSession) Logout() error { return nil }

func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	ss.from, ss.to = from, nil
	return nil
}

func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if _, err := ss.sink.mail.mailboxDir(to); err != nil {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "sink cannot store mail for this address"}
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	s := ss.sink
	s.mu.Lock()
	discard := s.discard
	s.mu.Unlock()
	if discard {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return err
		}
		s.mu.Lock()
		s.dropped++
		s.mu.Unlock()
		return nil
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	return s.accept(SinkMessage{From: ss.from, To: slices.Clone(ss.to), Data: data})
}
