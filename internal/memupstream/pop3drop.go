package memupstream

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// pop3Mailbox is the mailbox a POP3 maildrop is (RFC 1939 knows only one).
const pop3Mailbox = "INBOX"

// errNoSuchMessage and errDeleted are the POP3 session's answers for a bad
// message number.
var (
	errNoSuchMessage = errors.New("no such message")
	errDeleted       = errors.New("message already deleted")
	errGone          = errors.New("message was removed by another session")
)

// maildrop is the INBOX of one POP3 session as it was when the session
// began (RFC 1939 §5): message numbers stay fixed, deletions are marks
// until QUIT commits them.
type maildrop struct {
	c           *imapclient.Client // logged in, INBOX selected
	uidValidity uint32             // of the INBOX, for UIDL
	msgs        []dropMsg          // message n is msgs[n-1]
}

// dropMsg is one message of the maildrop.
type dropMsg struct {
	uid     imap.UID
	size    int64 // RFC822.SIZE: the stored octets
	deleted bool  // marked by DELE, cleared by RSET
}

// openMaildrop logs in to the in-process store as user, selects the INBOX
// and lists its messages.
func openMaildrop(ctx context.Context, a *mailAccess, user string) (*maildrop, error) {
	c, err := a.open(ctx, user)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	m := &maildrop{c: c}
	if err := m.load(); err != nil {
		_ = c.Close()
		return nil, err
	}
	return m, nil
}

// load selects the INBOX and records each message's UID and size.
func (m *maildrop) load() error {
	sel, err := m.c.Select(pop3Mailbox, nil).Wait()
	if err != nil {
		return fmt.Errorf("selecting %s: %w", pop3Mailbox, err)
	}
	m.uidValidity = sel.UIDValidity
	if sel.NumMessages == 0 {
		return nil
	}
	all := imap.SeqSet{}
	all.AddRange(1, 0) // 1:*
	bufs, err := m.c.Fetch(all, &imap.FetchOptions{UID: true, RFC822Size: true}).Collect()
	if err != nil {
		return fmt.Errorf("listing %s: %w", pop3Mailbox, err)
	}
	for _, b := range bufs {
		m.msgs = append(m.msgs, dropMsg{uid: b.UID, size: b.RFC822Size})
	}
	return nil
}

// get returns message n (1-based) unless it does not exist or is deleted.
func (m *maildrop) get(n int) (*dropMsg, error) {
	if n < 1 || n > len(m.msgs) {
		return nil, errNoSuchMessage
	}
	if msg := &m.msgs[n-1]; !msg.deleted {
		return msg, nil
	}
	return nil, errDeleted
}

// stat returns the number and total size of the messages not deleted.
func (m *maildrop) stat() (count int, size int64) {
	for _, msg := range m.msgs {
		if !msg.deleted {
			count++
			size += msg.size
		}
	}
	return count, size
}

// content fetches the whole message without setting \Seen.
func (m *maildrop) content(msg *dropMsg) ([]byte, error) {
	section := &imap.FetchItemBodySection{Peek: true}
	bufs, err := m.c.Fetch(imap.UIDSetNum(msg.uid), &imap.FetchOptions{
		BodySection: []*imap.FetchItemBodySection{section},
	}).Collect()
	if err != nil {
		return nil, fmt.Errorf("fetching UID %d: %w", msg.uid, err)
	}
	if len(bufs) == 0 {
		return nil, errGone
	}
	return bufs[0].FindBodySection(section), nil
}

// reset unmarks every deleted message (RSET).
func (m *maildrop) reset() {
	for i := range m.msgs {
		m.msgs[i].deleted = false
	}
}

// commit removes the messages marked deleted (the UPDATE state, RFC 1939
// §6): \Deleted on exactly those UIDs, then UID EXPUNGE (RFC 4315 §2.1), so
// messages other sessions marked stay.
func (m *maildrop) commit() error {
	var uids imap.UIDSet
	for _, msg := range m.msgs {
		if msg.deleted {
			uids.AddNum(msg.uid)
		}
	}
	if len(uids) == 0 {
		return nil
	}
	store := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}
	if err := m.c.Store(uids, store, nil).Close(); err != nil {
		return fmt.Errorf("marking deleted messages: %w", err)
	}
	if err := m.c.UIDExpunge(uids).Close(); err != nil {
		return fmt.Errorf("expunging deleted messages: %w", err)
	}
	return nil
}

// close logs out of the store.
func (m *maildrop) close() {
	_ = m.c.Logout().Wait()
	_ = m.c.Close()
}

// writeDotStuffed writes msg as the body of a multi-line response (RFC 1939
// §3): CRLF line ends, a "." before every line that starts with one, and the
// terminating ".". bodyLines < 0 writes the whole message; otherwise the
// header, the blank line and at most bodyLines lines of the body (TOP).
func writeDotStuffed(w *bufio.Writer, msg []byte, bodyLines int) error {
	inBody := false
	for len(msg) > 0 {
		if inBody && bodyLines >= 0 {
			if bodyLines == 0 {
				break
			}
			bodyLines--
		}
		line, rest, _ := bytes.Cut(msg, []byte("\n"))
		msg = rest
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) > 0 && line[0] == '.' {
			_ = w.WriteByte('.')
		}
		_, _ = w.Write(line)
		_, _ = w.WriteString("\r\n")
		if len(line) == 0 {
			inBody = true
		}
	}
	_, err := w.WriteString(".\r\n")
	return err
}
