package tokens

import (
	"context"
	"time"
)

// Backend keeps the token set of every identity. The encrypted file
// (*Store) is the default; *RedisStore shares the token sets between the
// replicas of a deployment. The methods that touch records are unexported:
// only this package implements a Backend, so records never leave it.
type Backend interface {
	// get returns a copy of identity's record; ok is false when there is none.
	get(identity string) (r record, ok bool, err error)
	// all returns copies of all records, sorted by identity.
	all() ([]record, error)
	// modify applies fn to the newest record of identity and stores the
	// result atomically unless fn returns keep=false or an error.
	modify(identity string, fn func(r *record, exists bool) (keep bool, err error)) error
	// Delete removes identity's record and reports whether there was one.
	Delete(identity string) (bool, error)
	// Status returns identity's state at now; ok is false when nothing is stored.
	Status(identity string, now time.Time) (st Status, ok bool, err error)
	// List returns the state of every stored identity, sorted by identity.
	List(now time.Time) ([]Status, error)
	// Describe names the backend for people: the file, or the Redis server.
	Describe() string
	// Close releases what the backend holds open.
	Close() error
}

// refreshLocker is implemented by backends that several processes share
// without a common file lock (Redis): the refresh of an identity takes a
// cluster-wide lock so that one replica asks the provider and the others
// wait for what it stores.
type refreshLocker interface {
	// lockRefresh tries once to take identity's refresh lock for ttl. It
	// returns a release function when it got the lock, nil when another
	// process holds it.
	lockRefresh(ctx context.Context, identity string, ttl time.Duration) (release func(), err error)
	// getFresh reads identity's record from the shared store itself,
	// bypassing any cache.
	getFresh(identity string) (r record, ok bool, err error)
}

// Describe names the token store file.
func (s *Store) Describe() string { return "token store " + s.path }

// Close does nothing: the file is opened for each read and write.
func (s *Store) Close() error { return nil }

var _ Backend = (*Store)(nil)
