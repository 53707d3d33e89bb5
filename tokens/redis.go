package tokens

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The Redis layout; every key starts with the configured prefix:
//
//	{prefix}id:{identity}    hash: v = version (1, 2, ...), k = key id,
//	                         d = nonce || AES-256-GCM(record), with the
//	                         identity and the version as additional data
//	{prefix}lock:{identity}  string: the refresh lock's random token, expiring
//	{prefix}keycheck         string: the key id of the store key in use
//	{prefix}events           pub/sub: "VERSION IDENTITY" after each write,
//	                         "0 IDENTITY" after a delete
//
// Identities are stored lower-case (storeKey).
const (
	redisFormat = "xoauthd-token-set/1"
	// redisOpTimeout bounds one Redis command (a script counts as one).
	redisOpTimeout = 3 * time.Second
	// redisMaxCAS bounds the attempts of one modify against concurrent writers.
	redisMaxCAS = 16
	// redisPingEvery is how often an idle subscription is checked.
	redisPingEvery = 5 * time.Second
	// redisResubscribeMax bounds the pause between two attempts to
	// subscribe again after Redis went away.
	redisResubscribeMax = 2 * time.Second
)

// casScript writes a token set only when the stored version is the one the
// writer read (0: none), so an older token set never replaces a newer one.
// KEYS: the identity's hash, the events channel. ARGV: expected version,
// new version, key id, sealed data, event. Returns 1 when written.
var casScript = redis.NewScript(`
local cur = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if cur ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'k', ARGV[3], 'd', ARGV[4])
redis.call('PUBLISH', KEYS[2], ARGV[5])
return 1`)

// deleteScript removes a token set and announces it. KEYS: the identity's
// hash, the events channel. ARGV: event. Returns the number removed.
var deleteScript = redis.NewScript(`
local n = redis.call('DEL', KEYS[1])
if n > 0 then redis.call('PUBLISH', KEYS[2], ARGV[1]) end
return n`)

// unlockScript releases a lock only when it still holds the caller's token:
// a lock that expired and was taken by another replica stays with it.
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// RedisOptions tune a RedisStore.
type RedisOptions struct {
	// Prefix starts every key (default "xoauthd:").
	Prefix string
	// Describe names the server in messages and logs, e.g. its URL without
	// credentials (default "Redis").
	Describe string
	// Logger receives the store's warnings (nil: discard).
	Logger *slog.Logger
}

// RedisStore keeps token sets in Redis (or Valkey), one encrypted value per
// identity, for several replicas at once. Reads come from an in-memory
// cache while a subscription to the store's events is up (another
// replica's write drops the cached copy), and from Redis otherwise; when
// Redis cannot be reached, what is cached is used. Writes are
// compare-and-set on a version. Safe for concurrent use.
type RedisStore struct {
	rdb    redis.UniversalClient
	aead   cipher.AEAD
	keyID  string
	prefix string
	desc   string
	log    *slog.Logger
	ps     *redis.PubSub // the events subscription
	stop   context.CancelFunc
	done   chan struct{} // closed when the subscriber has ended

	mu         sync.Mutex
	cache      map[string]cachedRecord // by storeKey
	gen        uint64                  // bumped by every event: a read that saw an older state is not cached
	subscribed bool                    // events arrive: fresh cache entries need no read
	known      map[string]bool         // identities seen in Redis, to name those that disappear
}

// cachedRecord is a record as last read or written, with its version.
type cachedRecord struct {
	rec     record
	version int64
	fresh   bool // read or written while subscribed, and no event since
}

var (
	_ Backend       = (*RedisStore)(nil)
	_ refreshLocker = (*RedisStore)(nil)
)

// NewRedisStore returns a store over rdb that encrypts with the 32-byte
// key. It checks that the tokens already in Redis were stored with the same
// key (an error naming store.key when not) and subscribes to the other
// replicas' writes. Redis being unreachable is no error here: it is logged,
// and every operation tries again. Close stops the subscription and closes
// rdb.
func NewRedisStore(rdb redis.UniversalClient, key []byte, opts RedisOptions) (*RedisStore, error) {
	aead, keyID, err := storeCipherOf(key)
	if err != nil {
		return nil, err
	}
	if opts.Prefix == "" {
		opts.Prefix = "xoauthd:"
	}
	if opts.Describe == "" {
		opts.Describe = "Redis"
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &RedisStore{rdb: rdb, aead: aead, keyID: keyID, prefix: opts.Prefix, desc: opts.Describe, log: log,
		done: make(chan struct{}), cache: map[string]cachedRecord{}, known: map[string]bool{}}
	if err := s.checkKey(); err != nil {
		if !IsTemporary(err) {
			return nil, err
		}
		log.Warn("the token store cannot be reached; serving what is cached and retrying", "store", s.desc, "err", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	s.ps = rdb.Subscribe(ctx) // connects when the subscriber subscribes
	go s.subscribe(ctx)
	return s, nil
}

// Describe names the Redis server.
func (s *RedisStore) Describe() string { return s.desc }

// Close stops following the other replicas' writes and closes the client.
func (s *RedisStore) Close() error {
	s.stop()
	_ = s.ps.Close() // ends a receive in progress
	<-s.done
	return s.rdb.Close()
}

func (s *RedisStore) idKey(k string) string   { return s.prefix + "id:" + k }
func (s *RedisStore) lockKey(k string) string { return s.prefix + "lock:" + k }
func (s *RedisStore) events() string          { return s.prefix + "events" }

// checkKey records the store key's id in Redis, or compares it with the one
// recorded there.
func (s *RedisStore) checkKey() error {
	ctx, cancel := context.WithTimeout(context.Background(), redisOpTimeout)
	defer cancel()
	if err := s.rdb.SetNX(ctx, s.prefix+"keycheck", s.keyID, 0).Err(); err != nil {
		return s.failed(err)
	}
	id, err := s.rdb.Get(ctx, s.prefix+"keycheck").Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return s.failed(err)
	}
	if err == nil && id != s.keyID {
		return &redisKeyError{desc: s.desc}
	}
	return nil
}

// redisKeyError: the token sets in Redis were stored with another key.
type redisKeyError struct{ desc string }

func (e *redisKeyError) Error() string {
	return e.desc + " holds token sets encrypted with a different store key (hint: store.key must be the same 32-byte key on every replica, " +
		"the one the tokens were stored with; to start over, delete the keys under store.redis.prefix and log every identity in again)"
}

// Is makes errors.Is(err, ErrWrongKey) true.
func (e *redisKeyError) Is(target error) bool { return target == ErrWrongKey }

// redisValueError: a stored value does not authenticate for its identity.
type redisValueError struct{ desc, identity string }

func (e *redisValueError) Error() string {
	return fmt.Sprintf("%s: the token set stored for %s does not authenticate with the store key: it was written for another identity "+
		"or changed outside xoauthd (hint: run \"xoauthd login %s\")", e.desc, e.identity, e.identity)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *redisValueError) Is(target error) bool { return target == ErrCorrupt }

// failed turns a Redis error into what callers act on: unreachable is a
// temporary failure (a login gets "try again later", never "bad password").
func (s *RedisStore) failed(err error) error {
	var reply redis.Error
	if errors.As(err, &reply) && !errors.Is(err, redis.ErrClosed) {
		return fmt.Errorf("%s refused a command: %w (hint: check store.redis.username and password, and the user's ACL)", s.desc, err)
	}
	var verify *tls.CertificateVerificationError
	if errors.As(err, &verify) {
		return fmt.Errorf("%s: %w (hint: for a server certificate from a private CA, set store.redis.ca_file)", s.desc, err)
	}
	return &TemporaryError{Meaning: "the token store " + s.desc + " cannot be reached (" + err.Error() + ")", Err: err}
}

// additionalData binds a sealed token set to its identity and version, so
// a value copied to another identity, or an old value put back, does not
// decrypt.
func redisAD(k string, version int64) []byte {
	return fmt.Appendf(nil, "%s\x00%s\x00%d", redisFormat, k, version)
}

func (s *RedisStore) seal(k string, version int64, r record) (string, error) {
	plain, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	defer clear(plain)
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return string(s.aead.Seal(nonce, nonce, plain, redisAD(k, version))), nil
}

// load reads identity k from Redis: found is false when there is nothing.
func (s *RedisStore) load(k string) (r record, version int64, found bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), redisOpTimeout)
	defer cancel()
	vals, err := s.rdb.HMGet(ctx, s.idKey(k), "v", "k", "d").Result()
	if err != nil {
		return record{}, 0, false, s.failed(err)
	}
	v, _ := vals[0].(string)
	id, _ := vals[1].(string)
	d, _ := vals[2].(string)
	if v == "" && id == "" && d == "" {
		return record{}, 0, false, nil
	}
	if id != s.keyID {
		return record{}, 0, false, &redisKeyError{desc: s.desc}
	}
	version, err = strconv.ParseInt(v, 10, 64)
	ns := s.aead.NonceSize()
	if err != nil || len(d) < ns {
		return record{}, 0, false, &redisValueError{desc: s.desc, identity: k}
	}
	plain, err := s.aead.Open(nil, []byte(d[:ns]), []byte(d[ns:]), redisAD(k, version))
	if err != nil {
		return record{}, 0, false, &redisValueError{desc: s.desc, identity: k}
	}
	defer clear(plain)
	if err := json.Unmarshal(plain, &r); err != nil {
		return record{}, 0, false, &redisValueError{desc: s.desc, identity: k}
	}
	return r, version, true, nil
}

// remember caches what a read or write that started at generation gen
// found or wrote, unless the cache holds a newer version. When an event
// came in meanwhile (gen moved on), the copy is not to be trusted without
// another read.
func (s *RedisStore) remember(k string, gen uint64, r record, version int64, found bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !found {
		delete(s.cache, k)
		return
	}
	if c, ok := s.cache[k]; ok && c.version > version {
		return // a write of this process got there first
	}
	s.cache[k] = cachedRecord{rec: r.clone(), version: version, fresh: s.subscribed && s.gen == gen}
	s.known[k] = true
}

// get returns identity's record: the cached copy while it is known to be
// current, else from Redis, else (Redis unreachable) the cached copy.
func (s *RedisStore) get(identity string) (record, bool, error) {
	k := storeKey(identity)
	s.mu.Lock()
	c, cached := s.cache[k]
	trusted := cached && c.fresh && s.subscribed
	s.mu.Unlock()
	if trusted {
		return c.rec.clone(), true, nil
	}
	r, ok, err := s.getFresh(identity)
	if err != nil && cached && IsTemporary(err) {
		return c.rec.clone(), true, nil
	}
	return r, ok, err
}

// getFresh reads identity's record from Redis and caches it.
func (s *RedisStore) getFresh(identity string) (record, bool, error) {
	k := storeKey(identity)
	s.mu.Lock()
	gen := s.gen
	s.mu.Unlock()
	r, version, found, err := s.load(k)
	if err != nil {
		if !IsTemporary(err) {
			// What is stored is unusable: so is any copy of it.
			s.mu.Lock()
			delete(s.cache, k)
			s.mu.Unlock()
		}
		return record{}, false, err
	}
	s.remember(k, gen, r, version, found)
	return r, found, nil
}

// all reads every stored identity from Redis.
func (s *RedisStore) all() ([]record, error) {
	keys, err := s.scanIdentities()
	if err != nil {
		return nil, err
	}
	out := make([]record, 0, len(keys))
	for _, k := range keys {
		r, ok, err := s.getFresh(k)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b record) int { return strings.Compare(storeKey(a.Identity), storeKey(b.Identity)) })
	return out, nil
}

// scanIdentities lists the identities that have a token set.
func (s *RedisStore) scanIdentities() ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), redisOpTimeout)
	defer cancel()
	var out []string
	iter := s.rdb.Scan(ctx, 0, s.idKey("*"), 100).Iterator()
	for iter.Next(ctx) {
		out = append(out, strings.TrimPrefix(iter.Val(), s.idKey("")))
	}
	if err := iter.Err(); err != nil {
		return nil, s.failed(err)
	}
	return out, nil
}

// modify reads identity's record, applies fn and writes the result when
// the stored version is still the one read; when another replica wrote in
// between, it reads again and applies fn to that.
func (s *RedisStore) modify(identity string, fn func(r *record, exists bool) (keep bool, err error)) error {
	k := storeKey(identity)
	for range redisMaxCAS {
		s.mu.Lock()
		gen := s.gen
		s.mu.Unlock()
		cur, version, found, err := s.load(k)
		if err != nil {
			return err
		}
		r := cur.clone()
		keep, err := fn(&r, found)
		if err != nil || !keep {
			s.remember(k, gen, cur, version, found)
			return err
		}
		written, err := s.write(k, version, r)
		if err != nil {
			return err
		}
		if written {
			s.remember(k, gen, r, version+1, true)
			return nil
		}
	}
	return &TemporaryError{Meaning: fmt.Sprintf("the token set of %s in %s changed %d times while being written; try again", identity, s.desc, redisMaxCAS)}
}

// write stores r as version+1 if the stored version is still version.
func (s *RedisStore) write(k string, version int64, r record) (bool, error) {
	sealed, err := s.seal(k, version+1, r)
	if err != nil {
		return false, fmt.Errorf("%s: encrypting the token set of %s: %w", s.desc, k, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), redisOpTimeout)
	defer cancel()
	n, err := casScript.Run(ctx, s.rdb, []string{s.idKey(k), s.events()},
		version, version+1, s.keyID, sealed, strconv.FormatInt(version+1, 10)+" "+k).Int()
	if err != nil {
		return false, s.failed(err)
	}
	return n == 1, nil
}

// Delete removes identity's token set.
func (s *RedisStore) Delete(identity string) (bool, error) {
	k := storeKey(identity)
	ctx, cancel := context.WithTimeout(context.Background(), redisOpTimeout)
	defer cancel()
	n, err := deleteScript.Run(ctx, s.rdb, []string{s.idKey(k), s.events()}, "0 "+k).Int()
	if err != nil {
		return false, s.failed(err)
	}
	s.mu.Lock()
	s.gen++
	delete(s.cache, k)
	delete(s.known, k)
	s.mu.Unlock()
	return n > 0, nil
}

// Status returns identity's state at now.
func (s *RedisStore) Status(identity string, now time.Time) (Status, bool, error) {
	return statusFrom(s.get, identity, now)
}

// List returns the state of every identity in Redis.
func (s *RedisStore) List(now time.Time) ([]Status, error) { return listFrom(s.all, now) }

// lockRefresh tries to take identity's refresh lock for ttl.
func (s *RedisStore) lockRefresh(ctx context.Context, identity string, ttl time.Duration) (func(), error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	token, key := hex.EncodeToString(b[:]), s.lockKey(storeKey(identity))
	ctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
	defer cancel()
	ok, err := s.rdb.SetNX(ctx, key, token, ttl).Result()
	if err != nil {
		return nil, s.failed(err)
	}
	if !ok {
		return nil, nil
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), redisOpTimeout)
		defer cancel()
		if err := unlockScript.Run(ctx, s.rdb, []string{key}, token).Err(); err != nil {
			// It expires by itself.
			s.log.Warn("releasing a refresh lock failed", "store", s.desc, "identity", identity, "err", err)
		}
	}, nil
}
