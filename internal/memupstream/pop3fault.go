package memupstream

import "slices"

// POP3Fault is a misbehaviour of the POP3 upstream towards its next
// connections. Unlike Fault, which follows a user's logins, some of these
// strike before a user is known (in the greeting, at AUTH).
type POP3Fault int

// Faults a test can switch on with POP3.SetFault.
const (
	// POP3FaultNone is normal behaviour.
	POP3FaultNone POP3Fault = iota
	// POP3FaultCloseMidGreeting writes half a greeting and closes.
	POP3FaultCloseMidGreeting
	// POP3FaultBadGreeting greets with "-ERR [SYS/TEMP] Too busy" and
	// closes.
	POP3FaultBadGreeting
	// POP3FaultNoXOAUTH2 answers AUTH XOAUTH2 with -ERR, as a server that
	// does not offer the mechanism.
	POP3FaultNoXOAUTH2
	// POP3FaultCloseOnAuth closes the connection when AUTH XOAUTH2 arrives,
	// without any reply.
	POP3FaultCloseOnAuth
	// POP3FaultRejectAlways answers every XOAUTH2 response with -ERR and no
	// error challenge, as Exchange Online does.
	POP3FaultRejectAlways
	// POP3FaultTempFail answers the XOAUTH2 response with
	// "-ERR [SYS/TEMP]".
	POP3FaultTempFail
)

// POP3Stats is what a POP3 upstream saw, for tests that count attempts.
type POP3Stats struct {
	Conns int // connections accepted
	Auths int // XOAUTH2 responses received
	// AfterChallenge are the client's lines after each error challenge
	// (an XOAUTH2 client sends an empty one).
	AfterChallenge []string
}

// SetFault makes the next n connections hit f; n < 0 means every
// connection until SetFault(POP3FaultNone, 0).
func (p *POP3) SetFault(f POP3Fault, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fault, p.faultLeft = f, n
	if f == POP3FaultNone || n == 0 {
		p.fault, p.faultLeft = POP3FaultNone, 0
	}
}

// Stats returns what the upstream saw so far.
func (p *POP3) Stats() POP3Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.stats
	st.AfterChallenge = slices.Clone(st.AfterChallenge)
	return st
}

// accepted counts a connection and returns the fault it gets.
func (p *POP3) accepted() POP3Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Conns++
	f := p.fault
	if p.faultLeft > 0 {
		if p.faultLeft--; p.faultLeft == 0 {
			p.fault = POP3FaultNone
		}
	}
	return f
}

// sawAuth counts an XOAUTH2 response.
func (p *POP3) sawAuth() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Auths++
}

// sawAfterChallenge records the client's line after an error challenge.
func (p *POP3) sawAfterChallenge(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.AfterChallenge = append(p.stats.AfterChallenge, line)
}
