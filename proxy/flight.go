package proxy

import "sync"

// flight is one password verification that the attempts with the same
// login, password and stored hash share while it runs: a burst of a
// hundred logins of one client costs one argon2id computation.
type flight struct {
	done    chan struct{} // closed when verdict and err are set
	verdict verdict       // verdictNone: the leader gave up, or err is set
	err     error         // the stored hash is unusable; set by the leader before done
	joined  int           // attempts that joined it; guarded by flights.mu (for tests)
}

// flights holds the verifications running now, by cache key (which binds
// login, password and stored hash under the process's secret key).
type flights struct {
	mu sync.Mutex
	m  map[cacheKey]*flight
}

// join returns the running flight of key, or starts one; lead is true
// when the caller started it and must land it.
func (fs *flights) join(key cacheKey) (f *flight, lead bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f, ok := fs.m[key]; ok {
		f.joined++
		return f, false
	}
	if fs.m == nil {
		fs.m = make(map[cacheKey]*flight)
	}
	f = &flight{done: make(chan struct{})}
	fs.m[key] = f
	return f, true
}

// land publishes the verdict of a flight to the attempts waiting for it.
// New attempts start their own flight (or hit the cache) from then on.
func (fs *flights) land(key cacheKey, f *flight, v verdict) {
	fs.mu.Lock()
	delete(fs.m, key)
	fs.mu.Unlock()
	f.verdict = v
	close(f.done)
}

// joinedAll returns how many attempts joined the running flights (for tests).
func (fs *flights) joinedAll() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := 0
	for _, f := range fs.m {
		n += f.joined
	}
	return n
}
