package memupstream

import (
	"context"
	"fmt"
	"net"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// mailAccess is a second IMAP server over the same users that only this
// process can reach, through in-memory pipes, and that logs in with a bare
// user name. The POP3 upstream reads and expunges messages through it: the
// memory backend hands message contents only to IMAP sessions, and going
// through IMAP keeps one set of mailboxes for every protocol. Its logins do
// not consume the faults set with SetFault and are not checked by
// Options.Validate: the POP3 session has done that already.
type mailAccess struct {
	srv    *Server
	imap   *imapserver.Server
	ln     *pipeListener
	served chan struct{} // closed when Serve has returned
}

// newMailAccess starts the in-process IMAP server for s.
func newMailAccess(s *Server) *mailAccess {
	a := &mailAccess{srv: s, ln: newPipeListener(), served: make(chan struct{})}
	a.imap = imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &accessSession{srv: s}, nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}},
		InsecureAuth: true, // a pipe inside the process: nothing to eavesdrop on
		Logger:       printfLogger{log: s.logger()},
	})
	go func() {
		defer close(a.served)
		_ = a.imap.Serve(a.ln)
	}()
	return a
}

// open returns an IMAP client logged in as user.
func (a *mailAccess) open(ctx context.Context, user string) (*imapclient.Client, error) {
	conn, err := a.ln.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("opening the mailbox store: %w", err)
	}
	c := imapclient.New(conn, nil)
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	if err := c.Login(user, "").Wait(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("opening the mailboxes of %s: %w", user, err)
	}
	return c, nil
}

// close ends every connection of the in-process server. The listener goes
// first and Serve must have returned before imapserver's Close, which would
// otherwise race with a Serve that is still starting.
func (a *mailAccess) close() {
	_ = a.ln.Close()
	<-a.served
	_ = a.imap.Close()
}

// accessSession is a session of the in-process server: LOGIN with any
// password opens the user's mailboxes.
type accessSession struct {
	*imapmemserver.UserSession // set by Login; nil before

	srv *Server
}

var _ imapserver.Session = (*accessSession)(nil)

// Login opens the mailboxes of an existing user without a password.
func (sess *accessSession) Login(username, _ string) error {
	u := sess.srv.user(username)
	if u == nil {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthenticationFailed,
			Text: "No such user"}
	}
	sess.UserSession = imapmemserver.NewUserSession(u)
	return nil
}

// Close releases the selected mailbox.
func (sess *accessSession) Close() error {
	if sess.UserSession == nil {
		return nil
	}
	return sess.UserSession.Close()
}

// pipeListener is a net.Listener whose connections are net.Pipe ends handed
// over by dial.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

// Accept returns the server end of the next dialled pipe.
func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close makes Accept and dial fail from now on.
func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr names the listener.
func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

// dial returns the client end of a new pipe once Accept has taken the other.
func (l *pipeListener) dial(ctx context.Context) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		err := net.ErrClosed
		_, _ = client.Close(), server.Close()
		return nil, err
	case <-ctx.Done():
		_, _ = client.Close(), server.Close()
		return nil, ctx.Err()
	}
}

// pipeAddr is the address of a pipeListener.
type pipeAddr struct{}

// Network returns "pipe".
func (pipeAddr) Network() string { return "pipe" }

// String returns "memupstream".
func (pipeAddr) String() string { return "memupstream" }
