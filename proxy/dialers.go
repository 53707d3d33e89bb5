package proxy

import "sync"

// Dialers keeps one Dialer per upstream (address, TLS mode, CA file), so the
// connections to one upstream share a TLS session cache across logins and
// configuration reloads. The zero value is ready to use; it is safe for
// concurrent use. A CA file is read when its upstream is first used.
type Dialers struct {
	mu sync.Mutex
	m  map[dialerKey]*Dialer // set on first Get
}

type dialerKey struct {
	addr   string
	mode   TLSMode
	caFile string
}

// Get returns the Dialer for the upstream, making it with NewDialer on first use.
func (s *Dialers) Get(addr string, mode TLSMode, caFile string) (*Dialer, error) {
	k := dialerKey{addr, mode, caFile}
	s.mu.Lock()
	defer s.mu.Unlock()
	if d, ok := s.m[k]; ok {
		return d, nil
	}
	d, err := NewDialer(addr, mode, caFile)
	if err != nil {
		return nil, err
	}
	if s.m == nil {
		s.m = make(map[dialerKey]*Dialer)
	}
	s.m[k] = d
	return d, nil
}
