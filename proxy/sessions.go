package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// tombstoneTTL is how long Sessions remembers that it closed a login's
// sessions, so that a login whose password check began before the Close and
// whose upstream login ends after it is refused too. It is far longer than
// any front lets a login take.
const tombstoneTTL = 10 * time.Minute

// Sessions is a registry of the logged-in sessions of each local login, so
// that a configuration reload can end the sessions of an account that was
// removed or whose password changed, and only those. Connect registers a
// session when a Gateway has Sessions and its context comes from a
// connection accepted by a Server; the entry goes away when the connection
// ends. The zero value is ready to use; a nil *Sessions registers nothing.
// It is safe for concurrent use.
type Sessions struct {
	mu      sync.Mutex
	byLogin map[string]map[*connScope]struct{} // lower-cased login → its sessions
	closed  map[string]time.Time               // lower-cased login → when Close last ran
}

// Close ends every session logged in as login (case-insensitively) and
// returns how many it ended. Each session ends the way its front chose with
// OnSessionClose; by default its connection's context is cancelled with
// reason as the cause, which ends a relayed IMAP or POP3 session by closing
// both its connections. A login whose password check began before Close and
// whose session is not registered yet is refused when it gets there.
func (s *Sessions) Close(login string, reason error) int {
	if s == nil {
		return 0
	}
	key := strings.ToLower(login)
	now := time.Now()
	s.mu.Lock()
	scopes := s.byLogin[key]
	delete(s.byLogin, key)
	if s.closed == nil {
		s.closed = make(map[string]time.Time)
	}
	for k, t := range s.closed {
		if now.Sub(t) > tombstoneTTL {
			delete(s.closed, k)
		}
	}
	s.closed[key] = now
	s.mu.Unlock()
	for sc := range scopes {
		sc.end(reason)
	}
	return len(scopes)
}

// Count returns how many sessions are logged in as login (case-insensitively).
func (s *Sessions) Count(login string) int {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byLogin[strings.ToLower(login)])
}

// Len returns how many sessions are registered in all.
func (s *Sessions) Len() int {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, set := range s.byLogin {
		n += len(set)
	}
	return n
}

// enter registers the session of ctx's connection under login before its
// upstream login. It fails with ErrBadCredentials when Close named login
// after the session's password check began (the check may have seen the
// account as it was). leave undoes the registration; call it when the
// upstream login fails. Without Sessions or a connection scope in ctx, it
// registers nothing and leave does nothing.
func (s *Sessions) enter(ctx context.Context, login string) (leave func(), err error) {
	sc := scopeOf(ctx)
	if s == nil || sc == nil {
		return func() {}, nil
	}
	key := strings.ToLower(login)
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.closed[key]; ok && !sc.authStart().After(t) {
		return nil, fmt.Errorf("%w: the account changed while its password was checked", ErrBadCredentials)
	}
	if s.byLogin == nil {
		s.byLogin = make(map[string]map[*connScope]struct{})
	}
	set := s.byLogin[key]
	if set == nil {
		set = make(map[*connScope]struct{})
		s.byLogin[key] = set
	}
	if _, dup := set[sc]; dup {
		// A front that connects upstream more than once per session (SMTP
		// after an upstream failure) is registered already.
		return func() {}, nil
	}
	set[sc] = struct{}{}
	stop := context.AfterFunc(sc.ctx, func() { s.remove(key, sc) })
	return func() {
		stop()
		s.remove(key, sc)
	}, nil
}

// remove drops one registration, if it is still there.
func (s *Sessions) remove(key string, sc *connScope) {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.byLogin[key]
	delete(set, sc)
	if len(set) == 0 {
		delete(s.byLogin, key)
	}
}

// connScope is what the registry knows about one accepted connection. A
// Server puts it in the context of each connection it accepts.
type connScope struct {
	ctx    context.Context         // the connection's context; set at accept
	cancel context.CancelCauseFunc // ends ctx; set at accept
	log    *slog.Logger            // the connection's logger; set at accept

	mu      sync.Mutex
	authAt  time.Time          // when the last password check began; the accept time before
	onClose func(reason error) // set by OnSessionClose; nil: cancel ctx
	reason  error              // why Sessions.Close ended the session; set by end
}

// scopeKey is the context key of a connection's *connScope.
type scopeKey struct{}

// withConnScope returns ctx carrying a new scope for the connection whose
// context ctx is and which cancel ends.
func withConnScope(ctx context.Context, cancel context.CancelCauseFunc, log *slog.Logger) context.Context {
	sc := &connScope{cancel: cancel, log: log, authAt: time.Now()}
	ctx = context.WithValue(ctx, scopeKey{}, sc)
	sc.ctx = ctx
	return ctx
}

// scopeOf returns the connection scope ctx carries, or nil.
func scopeOf(ctx context.Context) *connScope {
	sc, _ := ctx.Value(scopeKey{}).(*connScope)
	return sc
}

// noteAuthStart records that a password check for ctx's connection begins
// now (before the account is looked up).
func noteAuthStart(ctx context.Context) {
	if sc := scopeOf(ctx); sc != nil {
		sc.mu.Lock()
		sc.authAt = time.Now()
		sc.mu.Unlock()
	}
}

func (sc *connScope) authStart() time.Time {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.authAt
}

// end ends the session for reason, the way its front chose.
func (sc *connScope) end(reason error) {
	sc.mu.Lock()
	fn := sc.onClose
	if sc.reason == nil {
		sc.reason = reason
	}
	sc.mu.Unlock()
	if sc.log != nil {
		sc.log.Info("closing the session", "reason", reason.Error())
	}
	if fn != nil {
		fn(reason)
		return
	}
	sc.cancel(reason)
}

// OnSessionClose makes fn what Sessions.Close does to the session of ctx's
// connection, instead of cancelling the connection's context. A front that
// can end a session politely at its next command boundary installs it (SMTP
// answers the next command with 421 4.7.0 and closes); a byte relay cannot,
// and keeps the default. fn is called at most once per Close, must not block,
// and SessionClosed reports the reason from then on. OnSessionClose reports
// false, and does nothing, when ctx does not come from a connection accepted
// by a Server.
func OnSessionClose(ctx context.Context, fn func(reason error)) bool {
	sc := scopeOf(ctx)
	if sc == nil {
		return false
	}
	sc.mu.Lock()
	sc.onClose = fn
	sc.mu.Unlock()
	return true
}

// SessionClosed returns why Sessions.Close ended the session of ctx's
// connection, or nil while it has not.
func SessionClosed(ctx context.Context) error {
	sc := scopeOf(ctx)
	if sc == nil {
		return nil
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.reason
}
