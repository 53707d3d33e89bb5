package memupstream

import (
	"errors"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-sasl"
)

// NotConnectedText is Exchange Online's text for a login whose mailbox cannot
// be opened, sent with BAD to the commands after the login.
const NotConnectedText = "User is authenticated but not connected."

// TokenExpiredText is Exchange Online's BYE text when the login token expired.
const TokenExpiredText = "Session invalidated - AccessTokenExpired"

// session is one IMAP connection. It accepts only XOAUTH2.
type session struct {
	*imapmemserver.UserSession // set by a successful XOAUTH2 login; nil before

	srv  *Server
	conn *imapserver.Conn // for faults that close the connection

	// fault is set at login: FaultNotConnected or FaultCloseAfterLogin.
	fault Fault
}

var (
	_ imapserver.SessionSASL      = (*session)(nil)
	_ imapserver.SessionNamespace = (*session)(nil)
	_ imapserver.SessionMove      = (*session)(nil)
)

func (s *Server) newSession(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	return &session{srv: s, conn: c}, nil, nil
}

// Login refuses passwords: only XOAUTH2 logs in.
func (sess *session) Login(username, password string) error {
	return &imap.Error{
		Type: imap.StatusResponseTypeNo,
		Code: imap.ResponseCodeAuthenticationFailed,
		Text: "Use AUTHENTICATE XOAUTH2",
	}
}

// AuthenticateMechanisms lists XOAUTH2 only.
func (sess *session) AuthenticateMechanisms() []string { return []string{mechanism} }

// Authenticate returns the XOAUTH2 server.
func (sess *session) Authenticate(mech string) (sasl.Server, error) {
	if mech != mechanism {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "Unsupported authentication mechanism"}
	}
	return &xoauth2Server{sess: sess}, nil
}

// loggedIn is called by the XOAUTH2 server when the token was accepted.
// An unknown user gets Exchange's "not connected" answers, as a token that is
// valid for another mailbox does.
func (sess *session) loggedIn(user string) {
	sess.fault = sess.srv.takeFault(user, FaultNotConnected, FaultCloseAfterLogin)
	u := sess.srv.user(user)
	if u == nil {
		sess.fault = FaultNotConnected
		return
	}
	sess.UserSession = imapmemserver.NewUserSession(u)
}

// check applies the login's fault before a mailbox command.
func (sess *session) check() error {
	switch sess.fault {
	case FaultNotConnected:
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: NotConnectedText}
	case FaultCloseAfterLogin:
		_ = sess.conn.NetConn().Close()
		return errors.New("memupstream: connection closed by fault")
	}
	return nil
}

// Close releases the selected mailbox.
func (sess *session) Close() error {
	if sess.UserSession == nil {
		return nil
	}
	return sess.UserSession.Close()
}

// Select opens a mailbox.
func (sess *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	if err := sess.check(); err != nil {
		return nil, err
	}
	return sess.UserSession.Select(name, options)
}

// Create makes a mailbox.
func (sess *session) Create(name string, options *imap.CreateOptions) error {
	if err := sess.check(); err != nil {
		return err
	}
	return sess.UserSession.Create(name, options)
}

// Delete removes a mailbox.
func (sess *session) Delete(name string) error {
	if err := sess.check(); err != nil {
		return err
	}
	return sess.UserSession.Delete(name)
}

// Rename renames a mailbox.
func (sess *session) Rename(name, newName string, options *imap.RenameOptions) error {
	if err := sess.check(); err != nil {
		return err
	}
	return sess.UserSession.Rename(name, newName, options)
}

// Subscribe marks a mailbox subscribed.
func (sess *session) Subscribe(name string) error {
	if err := sess.check(); err != nil {
		return err
	}
	return sess.UserSession.Subscribe(name)
}

// Unsubscribe marks a mailbox unsubscribed.
func (sess *session) Unsubscribe(name string) error {
	if err := sess.check(); err != nil {
		return err
	}
	return sess.UserSession.Unsubscribe(name)
}

// List lists mailboxes.
func (sess *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if err := sess.check(); err != nil {
		return err
	}
	return sess.UserSession.List(w, ref, patterns, options)
}

// Status reports on a mailbox.
func (sess *session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	if err := sess.check(); err != nil {
		return nil, err
	}
	return sess.UserSession.Status(name, options)
}

// Append stores a message.
func (sess *session) Append(name string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	if err := sess.check(); err != nil {
		return nil, err
	}
	return sess.UserSession.Append(name, r, options)
}

// Namespace reports the personal namespace.
func (sess *session) Namespace() (*imap.NamespaceData, error) {
	if err := sess.check(); err != nil {
		return nil, err
	}
	return sess.UserSession.Namespace()
}

// idlePoll is how often IDLE looks for mailbox updates.
const idlePoll = 20 * time.Millisecond

// Idle sends mailbox updates until stop. It polls: go-imap's tracker only
// wakes an IDLE that has registered, and misses an update that lands
// between its continuation request and that registration.
func (sess *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if err := sess.check(); err != nil {
		return err
	}
	tick := time.NewTicker(idlePoll)
	defer tick.Stop()
	for {
		if err := sess.UserSession.Poll(w, true); err != nil {
			return err
		}
		select {
		case <-stop:
			return nil
		case <-tick.C:
		}
	}
}

// Poll reports pending mailbox updates (NOOP); it is not faulted, as
// Exchange answers NOOP even for a mailbox it cannot open.
func (sess *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if sess.UserSession == nil {
		return nil
	}
	return sess.UserSession.Poll(w, allowExpunge)
}
