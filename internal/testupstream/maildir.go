package testupstream

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// maildir writes messages into per-user Maildirs under root, owned by
// uid/gid so Dovecot's mail processes can read and move them.
type maildir struct {
	root     string
	uid, gid int
	seq      atomic.Uint64 // makes file names unique within this process
}

// mailboxDir returns the Maildir of user, named the way Dovecot's %u expands
// after the default username_format (%Lu): lower-cased.
func (m *maildir) mailboxDir(user string) (string, error) {
	u := strings.ToLower(user)
	if u == "" || u == "." || u == ".." || strings.ContainsAny(u, "/\x00") {
		return "", fmt.Errorf("invalid mailbox user %q: use an address like alice@example.test", user)
	}
	return filepath.Join(m.root, u), nil
}

// deliver stores msg byte for byte in user's Maildir new/ directory, creating
// the Maildir when it does not exist yet (RFC-less Maildir convention: write
// to tmp/, then rename into new/).
func (m *maildir) deliver(user string, msg []byte) error {
	dir, err := m.mailboxDir(user)
	if err != nil {
		return err
	}
	if err := m.mkdirOwned(dir); err != nil {
		return err
	}
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := m.mkdirOwned(filepath.Join(dir, sub)); err != nil {
			return err
		}
	}
	now := time.Now()
	name := fmt.Sprintf("%d.M%dP%dQ%d.testupstream,S=%d",
		now.Unix(), now.Nanosecond()/1000, os.Getpid(), m.seq.Add(1), len(msg))
	tmp := filepath.Join(dir, "tmp", name)
	if err := os.WriteFile(tmp, msg, 0o600); err != nil {
		return fmt.Errorf("writing message for %s: %w", user, err)
	}
	if err := os.Chown(tmp, m.uid, m.gid); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("handing message for %s to the mail user: %w", user, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "new", name)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("moving message for %s into new/: %w", user, err)
	}
	return nil
}

// mkdirOwned creates dir (if missing) owned by the mail user.
func (m *maildir) mkdirOwned(dir string) error {
	err := os.Mkdir(dir, 0o700)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("creating maildir %s: %w", dir, err)
	}
	if err := os.Chown(dir, m.uid, m.gid); err != nil {
		return fmt.Errorf("handing maildir %s to the mail user: %w", dir, err)
	}
	return nil
}
