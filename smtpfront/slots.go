package smtpfront

import (
	"context"
	"sync"
	"time"

	"github.com/xoauthd/xoauthd/proxy"
)

// slots limits the upstream SMTP sessions per identity (Exchange Online
// accepts 3 concurrent submissions per mailbox and answers a fourth with
// "432 4.3.2 Concurrent connections limit exceeded"). A session takes its
// identity's slot when its AUTH opens the upstream session and gives it back
// when the client session ends (QUIT or close), so one client session holds
// one slot for its whole life, idle or not, as the upstream counts it.
//
// The map holds an entry only while some session holds or waits for a slot
// of that identity, so it is bounded by the number of client sessions.
type slots struct {
	max int

	mu sync.Mutex
	m  map[string]*identitySlots
}

type identitySlots struct {
	sem   chan struct{} // capacity max; a send takes a slot
	users int           // holders and waiters; the entry goes at zero
}

func newSlots(max int) *slots {
	return &slots{max: max, m: make(map[string]*identitySlots)}
}

// acquire takes a slot of identity, waiting at most wait and while ctx is
// live; waiters are served in about arrival order. The returned release must
// be called exactly once.
func (s *slots) acquire(ctx context.Context, identity string, wait time.Duration) (release func(), err error) {
	e := s.enter(identity)
	select {
	case e.sem <- struct{}{}:
		return s.releaser(identity, e), nil
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case e.sem <- struct{}{}:
		return s.releaser(identity, e), nil
	case <-t.C:
		err = &proxy.IdentityLimitError{Identity: identity, Limit: s.max, Waited: wait}
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.leave(identity, e)
	return nil, err
}

func (s *slots) enter(identity string) *identitySlots {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[identity]
	if e == nil {
		e = &identitySlots{sem: make(chan struct{}, s.max)}
		s.m[identity] = e
	}
	e.users++
	return e
}

func (s *slots) leave(identity string, e *identitySlots) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e.users--
	if e.users == 0 {
		delete(s.m, identity)
	}
}

func (s *slots) releaser(identity string, e *identitySlots) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			<-e.sem
			s.leave(identity, e)
		})
	}
}

// inUse returns the slots held for identity (for tests and metrics).
func (s *slots) inUse(identity string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.m[identity]; e != nil {
		return len(e.sem)
	}
	return 0
}
