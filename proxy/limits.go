package proxy

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// IdentityLimitError refuses a login whose identity has as many upstream
// sessions as max_upstream_per_identity allows. It matches ErrIdentityLimit
// with errors.Is; its text names the limit and how to raise it.
type IdentityLimitError struct {
	Identity string
	Limit    int
	Waited   time.Duration // how long the login waited for a session to end; 0: refused at once
}

func (e *IdentityLimitError) Error() string {
	waited := ""
	if e.Waited > 0 {
		waited = fmt.Sprintf(" (none ended within %v)", e.Waited)
	}
	return fmt.Sprintf("identity %s has %d upstream sessions open, as many as max_upstream_per_identity allows%s: "+
		"raise max_upstream_per_identity on the server entry (mind the provider's own limit), or have its clients keep fewer sessions open",
		e.Identity, e.Limit, waited)
}

// Is makes errors.Is(err, ErrIdentityLimit) true.
func (e *IdentityLimitError) Is(target error) bool { return target == ErrIdentityLimit }

// IdentityLimits counts the upstream sessions per identity, so that a
// limit like max_upstream_per_identity holds across every listener that
// shares one IdentityLimits and one key (a protocol: the upstream counts
// IMAP, POP3 and SMTP sessions separately). Identities compare
// case-insensitively. The zero value is ready to use; it is safe for
// concurrent use. The map holds an entry only while some session holds or
// waits for a place, so it is bounded by the number of sessions.
type IdentityLimits struct {
	mu sync.Mutex
	m  map[string]*limitEntry
}

type limitEntry struct {
	held  int           // places taken
	users int           // holders and waiters; the entry goes at zero
	freed chan struct{} // closed and replaced when a place is given back
}

func limitKey(key, identity string) string { return key + "\x00" + strings.ToLower(identity) }

// Acquire takes one of max places of identity under key. When all are
// taken it waits up to wait for one to be given back (0: not at all) and
// then fails with an *IdentityLimitError (ErrIdentityLimit), or with ctx's
// error when ctx ends first. max <= 0 means no limit. The returned release
// gives the place back; calls after the first do nothing.
func (l *IdentityLimits) Acquire(ctx context.Context, key, identity string, max int, wait time.Duration) (release func(), err error) {
	if max <= 0 {
		return func() {}, nil
	}
	k := limitKey(key, identity)
	l.mu.Lock()
	if l.m == nil {
		l.m = make(map[string]*limitEntry)
	}
	e := l.m[k]
	if e == nil {
		e = &limitEntry{freed: make(chan struct{})}
		l.m[k] = e
	}
	e.users++
	var timeout <-chan time.Time
	for e.held >= max {
		if wait <= 0 {
			l.leaveLocked(k, e)
			l.mu.Unlock()
			return nil, &IdentityLimitError{Identity: identity, Limit: max}
		}
		if timeout == nil {
			t := time.NewTimer(wait)
			defer t.Stop()
			timeout = t.C
		}
		freed := e.freed
		l.mu.Unlock()
		select {
		case <-freed:
		case <-timeout:
			err = &IdentityLimitError{Identity: identity, Limit: max, Waited: wait}
		case <-ctx.Done():
			err = fmt.Errorf("waiting for a free upstream session of %s: %w", identity, context.Cause(ctx))
		}
		l.mu.Lock()
		if err != nil {
			l.leaveLocked(k, e)
			l.mu.Unlock()
			return nil, err
		}
	}
	e.held++
	l.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			e.held--
			close(e.freed)
			e.freed = make(chan struct{})
			l.leaveLocked(k, e)
		})
	}, nil
}

// leaveLocked drops a holder or waiter of e. The caller holds mu.
func (l *IdentityLimits) leaveLocked(k string, e *limitEntry) {
	if e.users--; e.users == 0 {
		delete(l.m, k)
	}
}

// InUse returns the places of identity under key that are taken.
func (l *IdentityLimits) InUse(key, identity string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.m[limitKey(key, identity)]; e != nil {
		return e.held
	}
	return 0
}

// entries returns how many identities have an entry (for tests).
func (l *IdentityLimits) entries() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}
