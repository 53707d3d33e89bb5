package pop3front

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/memupstream"
	"github.com/xoauthd/xoauthd/proxy"
)

// memUpstream is the POP3 upstream of the tests: memupstream's, accepting the
// tokens of allow, with its faults (memupstream.POP3Fault) and counts.
type memUpstream struct {
	srv      *memupstream.Server
	pop      *memupstream.POP3
	starttls bool

	mu     sync.Mutex
	tokens map[string]string // valid access token → the user= it is good for
}

func newMemUpstream(t testing.TB, starttls bool) *memUpstream {
	t.Helper()
	u := &memUpstream{starttls: starttls, tokens: map[string]string{}}
	// The scope Exchange Online names in its POP3 error challenge.
	u.srv = memupstream.MustStart(t, memupstream.Options{Validate: u.validate, Scope: "pop"})
	pop, err := u.srv.StartPOP3(memupstream.POP3Options{STARTTLS: starttls})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pop.Close() })
	u.pop = pop
	return u
}

func (u *memUpstream) validate(user, token string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if want, ok := u.tokens[token]; !ok || want != user {
		return errors.New("token not valid for this user")
	}
	return nil
}

// allow makes token good for user and gives user a mailbox.
func (u *memUpstream) allow(token, user string) {
	u.srv.AddUser(user)
	u.mu.Lock()
	defer u.mu.Unlock()
	u.tokens[token] = user
}

// dialer returns a proxy.Dialer for the upstream.
func (u *memUpstream) dialer() *proxy.Dialer {
	mode := proxy.TLSImplicit
	if u.starttls {
		mode = proxy.TLSStartTLS
	}
	return &proxy.Dialer{
		Addr: u.pop.Addr(), Mode: mode, TLS: u.srv.ClientTLS(),
		DialTimeout: 5 * time.Second, HandshakeTimeout: 5 * time.Second,
	}
}

// setFault makes every following connection hit f.
func (u *memUpstream) setFault(f memupstream.POP3Fault) { u.pop.SetFault(f, -1) }

// fill appends msgs to the INBOX of user.
func (u *memUpstream) fill(t testing.TB, user string, msgs ...[]byte) {
	t.Helper()
	for _, m := range msgs {
		if err := u.srv.Append(user, "INBOX", m); err != nil {
			t.Fatal(err)
		}
	}
}

// stats returns the connection and XOAUTH2 counts and the lines that
// followed error challenges.
func (u *memUpstream) stats() (conns, auths int, afterChallenge []string) {
	st := u.pop.Stats()
	return st.Conns, st.Auths, st.AfterChallenge
}
