package proxy

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"time"

	"github.com/xoauthd/xoauthd/internal/passhash"
)

// Defaults of CredentialOptions.
const (
	DefaultCacheTTL      = 5 * time.Minute
	DefaultCacheSize     = 10000
	DefaultAddrLimit     = 10
	DefaultLoginLimit    = 20
	DefaultWindow        = 15 * time.Minute
	DefaultFreeFailures  = 3
	DefaultBaseDelay     = 250 * time.Millisecond
	DefaultMaxDelay      = 4 * time.Second
	DefaultMaxTracked    = 10000
	maxLoggedLoginLength = 64 // a login longer than this is cut in log lines
)

// CredentialOptions tunes a Credentials. Zero values take the defaults.
type CredentialOptions struct {
	// CacheTTL is how long a successful verification is remembered
	// (default 5 min; negative: no cache).
	CacheTTL time.Duration
	// CacheSize bounds the remembered verifications (default 10000).
	CacheSize int
	// MaxConcurrent bounds argon2id verifications running at once
	// (default half the CPUs, at least one: a password-guessing burst from
	// many sources then leaves CPU for the sessions being relayed; measured
	// on 2 cores, honest logins during such a burst had a p99 of 35 ms with
	// one slot and 338 ms with two).
	MaxConcurrent int
	// AddrLimit and LoginLimit are the failures per Window after which a
	// source address (IPv6: its /64) or a login is refused without checking
	// the password (defaults 10 and 20; negative: no limit).
	AddrLimit, LoginLimit int
	// Window is how long failures are counted from the first (default 15 min).
	Window time.Duration
	// FreeFailures is how many failures are answered without delay; after
	// that each answer waits BaseDelay, doubling up to MaxDelay (defaults 3,
	// 250 ms, 4 s; a negative BaseDelay turns the delay off).
	FreeFailures        int
	BaseDelay, MaxDelay time.Duration
	// MaxTracked bounds the addresses and the logins with counted failures
	// in the default in-memory counters (default 10000 each; the oldest
	// windows are dropped first).
	MaxTracked int
	// SourceFailures and LoginFailures count the failures per source and
	// per login (default: MemoryFailures of this process, with Window and
	// MaxTracked). Replicas behind one address share them by plugging in a
	// shared FailureCounter; see its contract.
	SourceFailures, LoginFailures FailureCounter
	// Verify checks a password against a PHC string (default passhash.Verify).
	Verify func(phc, password string) (bool, error)
	// DummyHash is verified for unknown logins so that they take as long as
	// known ones (default: a hash of a random password made at start).
	DummyHash string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Log receives a warning when a source or login starts being refused
	// (default slog.Default()). Nothing secret is logged.
	Log *slog.Logger
}

// Credentials checks local logins against argon2id hashes: it caches recent
// successes, bounds concurrent verifications, and throttles failures per
// source and per login. Unknown logins and wrong passwords take the same
// time and give the same error. A failed login changes nothing stored. It
// is safe for concurrent use.
type Credentials struct {
	lookup   func(login string) (acct Account, passwordHash string, ok bool)
	verify   func(phc, password string) (bool, error)
	dummy    string
	now      func() time.Time
	sleep    func(ctx context.Context, d time.Duration) bool // sleepCtx; tests replace it
	sem      chan struct{}                                   // one token per running verification
	cache    *verifyCache                                    // remembers successes; derives flight keys
	flights  flights                                         // verifications running now
	throttle *throttle
	free     int
	base     time.Duration
	maxDelay time.Duration
	log      *slog.Logger
}

var _ Authenticator = (*Credentials)(nil)

// NewCredentials returns an Authenticator over lookup, which maps a login to
// its account and argon2id PHC string from the live configuration.
func NewCredentials(lookup func(login string) (acct Account, passwordHash string, ok bool), opts CredentialOptions) *Credentials {
	o := opts.withDefaults()
	c := &Credentials{
		lookup:   lookup,
		verify:   o.Verify,
		dummy:    o.DummyHash,
		now:      o.Now,
		sleep:    sleepCtx,
		sem:      make(chan struct{}, o.MaxConcurrent),
		free:     o.FreeFailures,
		base:     o.BaseDelay,
		maxDelay: o.MaxDelay,
		log:      o.Log,
		cache:    newVerifyCache(o.CacheTTL, o.CacheSize),
		throttle: newThrottle(o.AddrLimit, o.LoginLimit, o.SourceFailures, o.LoginFailures),
	}
	if c.dummy == "" {
		c.dummy = dummyHash()
	}
	return c
}

// dummyHash hashes a random password with the parameters of new hashes.
func dummyHash() string {
	pw := make([]byte, 32)
	rand.Read(pw) // never fails: crypto/rand crashes the program instead
	h, err := passhash.Hash(base64.RawStdEncoding.EncodeToString(pw))
	if err != nil {
		// Only a random source failure; a malformed dummy still fails every login.
		return "$argon2id$unavailable"
	}
	return h
}

func (o CredentialOptions) withDefaults() CredentialOptions {
	setDefault(&o.CacheTTL, DefaultCacheTTL)
	setDefault(&o.CacheSize, DefaultCacheSize)
	setDefault(&o.MaxConcurrent, max(1, runtime.NumCPU()/2))
	setDefault(&o.AddrLimit, DefaultAddrLimit)
	setDefault(&o.LoginLimit, DefaultLoginLimit)
	setDefault(&o.Window, DefaultWindow)
	setDefault(&o.FreeFailures, DefaultFreeFailures)
	setDefault(&o.BaseDelay, DefaultBaseDelay)
	setDefault(&o.MaxDelay, DefaultMaxDelay)
	setDefault(&o.MaxTracked, DefaultMaxTracked)
	if o.MaxConcurrent < 0 {
		o.MaxConcurrent = 1
	}
	if o.Verify == nil {
		o.Verify = passhash.Verify
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.SourceFailures == nil {
		o.SourceFailures = NewMemoryFailures(o.Window, o.MaxTracked, o.Now)
	}
	if o.LoginFailures == nil {
		o.LoginFailures = NewMemoryFailures(o.Window, o.MaxTracked, o.Now)
	}
	return o
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// Authenticate checks login and password from a client at remote. It
// returns ErrBadCredentials for an unknown login or a wrong password alike,
// a *ThrottledError (ErrThrottled) while the source or the login has too
// many recent failures, and another error (not the client's fault) when ctx
// ends while waiting or the stored hash is unusable.
//
// A recent success (the cache) answers at once and touches no failure
// counter. Attempts with the same login and password that arrive together
// share one verification. Attempts that need a verification wait for room
// rather than being refused: only failures count against the limits.
func (c *Credentials) Authenticate(ctx context.Context, login, password string, remote netip.Addr) (Account, error) {
	noteAuthStart(ctx) // before the lookup: see Sessions.Close
	src, lk := sourceName(remote), loginKey(login)
	acct, phc, known := c.lookup(login)
	if !known {
		phc = c.dummy
	}
	// Computed for unknown logins too, so both paths do the same work.
	key := c.cache.key(login, password, phc)
	for {
		if err := c.throttle.check(ctx, src, lk, login); err != nil {
			return Account{}, err
		}
		if known && c.cache.hit(key, c.now()) {
			return acct, nil
		}
		f, lead := c.flights.join(key)
		if lead {
			v, err := c.verifyOnce(ctx, f, key, src, lk, login, phc, password, known)
			c.flights.land(key, f, v)
			return c.answer(acct, v, err)
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			return Account{}, fmt.Errorf("waiting for the password check of %s: %w", logLogin(login), context.Cause(ctx))
		}
		switch f.verdict {
		case verdictNone:
			if f.err != nil {
				return Account{}, f.err
			}
			continue // the check that was shared gave up: check again
		case verdictFailure:
			a, l, err := c.throttle.failJoined(context.WithoutCancel(ctx), src, lk)
			if err != nil {
				return Account{}, err
			}
			c.logLimits(src, login, a, l)
		}
		return c.answer(acct, f.verdict, nil)
	}
}

// answer is Authenticate's result for a verdict.
func (c *Credentials) answer(acct Account, v verdict, err error) (Account, error) {
	switch {
	case err != nil:
		return Account{}, err
	case v == verdictSuccess:
		return acct, nil
	}
	return Account{}, ErrBadCredentials
}

// verifyOnce runs the check that the attempts sharing f wait for: it waits
// for room under the limits, then for the delay that earlier failures
// earned, verifies, and settles the outcome with the throttle. A
// verdictNone with a nil error means it gave up (the caller's context
// ended): the others try again on their own.
func (c *Credentials) verifyOnce(ctx context.Context, f *flight, key cacheKey, src, lk, login, phc, password string, known bool) (verdict, error) {
	prior, err := c.throttle.admit(ctx, src, lk, login)
	if err != nil {
		return verdictNone, err
	}
	// An admitted check is settled even when the client has gone away: a
	// guesser must not escape the count by hanging up.
	sctx := context.WithoutCancel(ctx)
	if !c.sleep(ctx, c.delay(prior)) {
		_, _, serr := c.throttle.settle(sctx, src, lk, verdictNone)
		return verdictNone, errors.Join(fmt.Errorf("waiting before checking the password of %s: %w", logLogin(login), context.Cause(ctx)), serr)
	}
	ok, err := c.verifyBounded(ctx, phc, password)
	switch {
	case err != nil && (known || ctx.Err() != nil):
		_, _, serr := c.throttle.settle(sctx, src, lk, verdictNone)
		if ctx.Err() != nil {
			return verdictNone, errors.Join(err, serr)
		}
		f.err = errors.Join(fmt.Errorf("checking the password of %s: %w (hint: set its password_hash to the output of xoauthd hash-password)", logLogin(login), err), serr)
		return verdictNone, f.err
	case !known || !ok:
		a, l, err := c.throttle.settle(sctx, src, lk, verdictFailure)
		c.logLimits(src, login, a, l)
		return verdictFailure, err
	}
	c.cache.add(key, c.now())
	_, _, err = c.throttle.settle(sctx, src, lk, verdictSuccess)
	if err != nil {
		c.log.Warn("forgetting the failed logins of a source after a good login", "source", src, "err", err)
	}
	return verdictSuccess, nil
}

// verifyBounded runs one verification when a slot is free.
func (c *Credentials) verifyBounded(ctx context.Context, phc, password string) (bool, error) {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return false, fmt.Errorf("waiting for a password check slot: %w", context.Cause(ctx))
	}
	defer func() { <-c.sem }()
	return c.verify(phc, password)
}

// delay returns how long to wait before checking a password after prior
// recent failures.
func (c *Credentials) delay(prior int) time.Duration {
	if c.base < 0 || prior < c.free {
		return 0
	}
	d := c.base
	for i := c.free; i < prior && d < c.maxDelay; i++ {
		d *= 2
	}
	return min(d, c.maxDelay)
}

// logLimits warns when a failure brought the source or the login to its
// limit: from now on it is refused for a while.
func (c *Credentials) logLimits(src, login string, a, l int) {
	if a == c.throttle.addrLimit {
		c.log.Warn("too many failed logins from this source, refusing it for a while", "source", src, "login", cutLogin(login), "limit", c.throttle.addrLimit)
	}
	if l == c.throttle.loginLimit {
		c.log.Warn("too many failed logins for this login, refusing it for a while", "login", cutLogin(login), "source", src, "limit", c.throttle.loginLimit)
	}
}

// logLogin returns login quoted and cut to a length fit for a log line.
func logLogin(login string) string {
	if len(login) > maxLoggedLoginLength {
		login = login[:maxLoggedLoginLength] + "..."
	}
	return fmt.Sprintf("%q", login)
}
