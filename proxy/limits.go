package proxy

import (
	"fmt"
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
