package tokens

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/testidp"
	"github.com/xoauthd/xoauthd/internal/testredis"
)

// openRedisStore opens a RedisStore on srv with key, closed when the test ends.
func openRedisStore(t testing.TB, srv *testredis.Server, key []byte) *RedisStore {
	t.Helper()
	return openRedisConf(t, config.RedisStore{URL: srv.URL(), Prefix: "test:"}, key)
}

// openRedisConf opens a RedisStore as store.redis says, closed when the
// test ends.
func openRedisConf(t testing.TB, conf config.RedisStore, key []byte) *RedisStore {
	t.Helper()
	s, err := OpenRedis(conf, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rawRedis is a plain client on srv for looking at and changing Redis
// behind the store's back.
func rawRedis(t testing.TB, srv *testredis.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { c.Close() })
	return c
}

// waitSubscribed waits until s follows the events channel.
func waitSubscribed(t testing.TB, s *RedisStore) {
	t.Helper()
	waitFor(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.subscribed
	})
}

// TestRedisStoreRoundTrip: what one replica writes, another reads, lists
// and deletes; a write by one drops the other's cached copy.
func TestRedisStoreRoundTrip(t *testing.T) {
	srv := testredis.Start(t)
	key := newKey(t)
	a, b := openRedisStore(t, srv, key), openRedisStore(t, srv, key)
	waitSubscribed(t, a)
	waitSubscribed(t, b)
	idp := newIdP(t, testidp.Options{})
	seed(t, a, idp, alice, publicClient, "at-1", time.Now().Add(time.Hour))
	if r := mustGet(t, b, alice); r.AccessToken != "at-1" {
		t.Fatalf("b reads %q", r.AccessToken)
	}
	seed(t, a, idp, alice, publicClient, "at-2", time.Now().Add(time.Hour))
	waitFor(t, func() bool { return mustGet(t, b, alice).AccessToken == "at-2" })
	seed(t, b, idp, bob, publicClient, "at-bob", time.Now().Add(time.Hour))
	st, err := a.List(time.Now())
	if err != nil || len(st) != 2 || st[0].Identity != alice || st[1].Identity != bob || st[0].State != StateValid {
		t.Fatalf("List = %+v, %v", st, err)
	}
	if found, err := b.Delete(alice); err != nil || !found {
		t.Fatalf("Delete = %v, %v", found, err)
	}
	waitFor(t, func() bool { _, ok, _ := a.get(alice); return !ok })
	if found, _ := b.Delete(alice); found {
		t.Error("a second Delete found something")
	}
}

// TestRedisValueIsEncrypted: nothing in Redis shows a token or the identity's data.
func TestRedisValueIsEncrypted(t *testing.T) {
	srv := testredis.Start(t)
	s := openRedisStore(t, srv, newKey(t))
	idp := newIdP(t, testidp.Options{})
	rec := seed(t, s, idp, alice, publicClient, "secret-access-token", time.Now().Add(time.Hour))
	raw := rawRedis(t, srv)
	h, err := raw.HGetAll(context.Background(), "test:id:"+alice).Result()
	if err != nil || h["v"] != "1" || h["d"] == "" {
		t.Fatalf("stored hash %v, %v", h, err)
	}
	for _, v := range h {
		for _, secret := range []string{rec.RefreshToken, "secret-access-token", "m365", "authcode"} {
			if strings.Contains(v, secret) {
				t.Fatalf("Redis holds %q in clear", secret)
			}
		}
	}
}

// TestRedisValueSwapRejected: a value copied from one identity's key to
// another's does not authenticate; neither does an older value put back.
func TestRedisValueSwapRejected(t *testing.T) {
	srv := testredis.Start(t)
	s := openRedisStore(t, srv, newKey(t))
	idp := newIdP(t, testidp.Options{})
	rec := seed(t, s, idp, alice, publicClient, "alice-at", time.Now().Add(time.Hour))
	seed(t, s, idp, bob, publicClient, "bob-at", time.Now().Add(time.Hour))
	ctx := context.Background()
	raw := rawRedis(t, srv)
	h, err := raw.HGetAll(ctx, "test:id:"+alice).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.HSet(ctx, "test:id:"+bob, h).Err(); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.getFresh(bob)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "does not authenticate") || !strings.Contains(err.Error(), bob) {
		t.Fatalf("reading bob with alice's value: %v; want an authentication failure naming bob", err)
	}
	if strings.Contains(err.Error(), rec.RefreshToken) || strings.Contains(err.Error(), "alice-at") {
		t.Fatal("the error shows a token")
	}
	// Rollback: alice's version 1 value put back under version 2.
	seed(t, s, idp, alice, publicClient, "alice-at-2", time.Now().Add(time.Hour))
	if err := raw.HSet(ctx, "test:id:"+alice, "d", h["d"]).Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.getFresh(alice); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("an old value under a new version: %v; want it rejected", err)
	}
	// The Manager refuses too, with an error that is not "bad password".
	m := NewManager(s, providersFor(msProvider(idp, publicClient, "", config.FlowAuthCode)), Options{})
	waitSubscribed(t, s)
	if _, err := m.Token(ctxT(t), bob); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Token of bob = %v; want ErrCorrupt", err)
	}
}

// TestRedisWrongKey: a store key other than the one the tokens were stored
// with is refused at open and on read, with an error that names store.key.
func TestRedisWrongKey(t *testing.T) {
	srv := testredis.Start(t)
	s := openRedisStore(t, srv, newKey(t))
	idp := newIdP(t, testidp.Options{})
	rec := seed(t, s, idp, alice, publicClient, "alice-at", time.Now().Add(time.Hour))
	_, err := OpenRedis(config.RedisStore{URL: srv.URL(), Prefix: "test:"}, newKey(t), nil)
	checkWrongKey(t, err, rec)
	// Without the marker (say it was deleted), the values themselves say so.
	if err := rawRedis(t, srv).Del(context.Background(), "test:keycheck").Err(); err != nil {
		t.Fatal(err)
	}
	other := openRedisStore(t, srv, newKey(t))
	_, _, err = other.get(alice)
	checkWrongKey(t, err, rec)
	_, err = other.List(time.Now())
	checkWrongKey(t, err, rec)
}

func checkWrongKey(t *testing.T, err error, rec record) {
	t.Helper()
	if !errors.Is(err, ErrWrongKey) || !strings.Contains(err.Error(), "store.key") || !strings.Contains(err.Error(), "different store key") {
		t.Fatalf("err = %v; want a wrong-key error naming store.key", err)
	}
	if strings.Contains(err.Error(), rec.RefreshToken) || strings.Contains(err.Error(), "alice-at") {
		t.Fatal("the error shows a token")
	}
}

// TestRedisWriteNeverOlder: a write based on an old version is refused, so
// an older token set never replaces a newer one; modify re-reads and
// applies its change to the newest.
func TestRedisWriteNeverOlder(t *testing.T) {
	srv := testredis.Start(t)
	s := openRedisStore(t, srv, newKey(t))
	idp := newIdP(t, testidp.Options{})
	old := seed(t, s, idp, alice, publicClient, "at-1", time.Now().Add(time.Hour))
	seed(t, s, idp, alice, publicClient, "at-2", time.Now().Add(time.Hour))
	written, err := s.write(storeKey(alice), 1, old)
	if err != nil || written {
		t.Fatalf("write at version 1 over version 2 = %v, %v; want refused", written, err)
	}
	if r := mustGet(t, s, alice); r.AccessToken != "at-2" {
		t.Fatalf("stored %q after a stale write", r.AccessToken)
	}
	// Concurrent modifies all land: none is lost to another.
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if err := s.modify(alice, func(r *record, _ bool) (bool, error) { r.Scopes = append(r.Scopes, "x"); return true, nil }); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if r, _, _ := s.getFresh(alice); len(r.Scopes) != 20 {
		t.Fatalf("after 20 concurrent modifies %d changes are stored", len(r.Scopes))
	}
}

// redisCluster is an IdP and n Managers, each over its own RedisStore on
// one Redis, as n replicas run.
type redisCluster struct {
	srv    *testredis.Server
	idp    *testidp.IdP
	stores []*RedisStore
	ms     []*Manager
}

func newRedisCluster(t *testing.T, n int, opts func(i int) Options) *redisCluster {
	t.Helper()
	c := &redisCluster{srv: testredis.Start(t), idp: newIdP(t, testidp.Options{})}
	key := newKey(t)
	prov := msProvider(c.idp, publicClient, "", config.FlowAuthCode)
	for i := range n {
		s := openRedisStore(t, c.srv, key)
		waitSubscribed(t, s)
		var o Options
		if opts != nil {
			o = opts(i)
		}
		c.stores = append(c.stores, s)
		c.ms = append(c.ms, NewManager(s, providersFor(prov), o))
	}
	return c
}

// TestRedisClusterSingleFlight: 100 callers spread over three replicas ask
// for an expired token at once: exactly one request reaches the provider
// and every caller gets the token it issued.
func TestRedisClusterSingleFlight(t *testing.T) {
	c := newRedisCluster(t, 3, nil)
	seed(t, c.stores[0], c.idp, alice, publicClient, "expired", time.Now().Add(-time.Minute))
	for _, m := range c.ms { // every replica has the expired token cached
		if _, ok, err := m.store.get(alice); !ok || err != nil {
			t.Fatal(err)
		}
	}
	const callers = 100
	toks, errs := atOnce(callers, func(i int) (string, error) { return c.ms[i%3].Token(ctxT(t), alice) })
	stored := mustGet(t, c.stores[0], alice)
	for i := range callers {
		if errs[i] != nil || toks[i] != stored.AccessToken {
			t.Fatalf("caller %d: %q, %v; want the stored token", i, toks[i], errs[i])
		}
	}
	if n := c.idp.Counts()[grantRefresh]; n != 1 {
		t.Errorf("%d refresh requests, want exactly 1", n)
	}
}

// TestRedisDeadLockHolder: a replica that took the refresh lock and died
// (it never releases it): another refreshes once the lock expires, exactly
// once, and the token it stores is what every replica uses.
func TestRedisDeadLockHolder(t *testing.T) {
	c := newRedisCluster(t, 2, func(int) Options { return Options{RefreshLockTTL: 300 * time.Millisecond} })
	seed(t, c.stores[0], c.idp, alice, publicClient, "expired", time.Now().Add(-time.Minute))
	ctx := context.Background()
	raw := rawRedis(t, c.srv)
	if ok, err := raw.SetNX(ctx, "test:lock:"+alice, "a-dead-replica", 300*time.Millisecond).Result(); !ok || err != nil {
		t.Fatal(ok, err)
	}
	tok, err := c.ms[1].Token(ctxT(t), alice)
	if err != nil {
		t.Fatal(err)
	}
	if n := c.idp.Counts()[grantRefresh]; n != 1 {
		t.Fatalf("%d refresh requests, want 1", n)
	}
	stored := mustGet(t, c.stores[1], alice)
	if tok != stored.AccessToken || tok == "expired" {
		t.Fatalf("got %q, stored %q", tok, stored.AccessToken)
	}
	waitFor(t, func() bool {
		t0, err := c.ms[0].Token(ctxT(t), alice)
		return err == nil && t0 == stored.AccessToken
	})
	if n := c.idp.Counts()[grantRefresh]; n != 1 {
		t.Errorf("%d refresh requests, want 1", n)
	}
}

// TestRedisStalledHolderCannotOverwrite: replica 0 takes the lock and stalls
// past it before its request reaches the provider; replica 1 refreshes
// meanwhile. When replica 0 finally gets its answer, it does not replace
// what replica 1 stored, and it hands out the stored token, not its own.
func TestRedisStalledHolderCannotOverwrite(t *testing.T) {
	gate := testidp.NewGate()
	t.Cleanup(gate.Open)
	c := newRedisCluster(t, 2, func(i int) Options {
		o := Options{RefreshLockTTL: 200 * time.Millisecond, RequestTimeout: 20 * time.Second}
		if i == 0 {
			o.HTTPClient = &http.Client{Transport: gate}
		}
		return o
	})
	seed(t, c.stores[0], c.idp, alice, publicClient, "expired", time.Now().Add(-time.Minute))
	type result struct {
		tok string
		err error
	}
	stalled := make(chan result, 1)
	go func() {
		tok, err := c.ms[0].Token(context.Background(), alice)
		stalled <- result{tok, err}
	}()
	<-gate.Arrived // replica 0 holds the lock and is stuck before the provider
	tok1, err := c.ms[1].Token(ctxT(t), alice)
	if err != nil {
		t.Fatal(err)
	}
	stored := mustGet(t, c.stores[1], alice)
	if tok1 != stored.AccessToken {
		t.Fatal("replica 1 did not store the token it uses")
	}
	gate.Open()
	r := <-stalled
	if r.err != nil {
		t.Fatal(r.err)
	}
	after, _, err := c.stores[0].getFresh(alice)
	if err != nil {
		t.Fatal(err)
	}
	if after.AccessToken != stored.AccessToken || after.RefreshToken != stored.RefreshToken {
		t.Fatal("the stalled replica replaced the newer token set")
	}
	if r.tok != stored.AccessToken {
		t.Fatal("the stalled replica uses its own token instead of the stored one")
	}
	if n := c.idp.Counts()[grantRefresh]; n != 2 {
		t.Errorf("%d refresh requests, want 2 (the stalled one and the one after its lock expired)", n)
	}
}

// TestRedisOutage: with Redis down, a valid cached token is handed out; a
// login that needs a refresh gets a temporary error (never needs-login);
// when Redis is back everything works without a new sign-in.
func TestRedisOutage(t *testing.T) {
	c := newRedisCluster(t, 1, func(int) Options { return Options{RequestTimeout: 2 * time.Second} })
	m, s := c.ms[0], c.stores[0]
	seed(t, s, c.idp, alice, publicClient, "alice-valid", time.Now().Add(time.Hour))
	seed(t, s, c.idp, bob, publicClient, "bob-expired", time.Now().Add(-time.Minute))
	for _, id := range []string{alice, bob} { // cached, as after earlier logins
		if _, _, err := s.get(id); err != nil {
			t.Fatal(err)
		}
	}
	c.srv.Stop()
	waitFor(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return !s.subscribed })
	if tok, err := m.Token(ctxT(t), alice); err != nil || tok != "alice-valid" {
		t.Fatalf("cached token during the outage: %q, %v", tok, err)
	}
	_, err := m.Token(ctxT(t), bob)
	if !IsTemporary(err) || errors.Is(err, ErrNeedsLogin) {
		t.Fatalf("refresh during the outage: %v; want a temporary error", err)
	}
	if !strings.Contains(err.Error(), "cannot be reached") {
		t.Errorf("error %q does not say the store is unreachable", err)
	}
	if _, err := s.List(time.Now()); !IsTemporary(err) {
		t.Errorf("List during the outage: %v; want a temporary error", err)
	}
	if n := c.idp.Counts()[grantRefresh]; n != 0 {
		t.Errorf("%d refresh requests while the store was down; want none (nowhere to keep a rotated token)", n)
	}
	c.srv.Restart()
	waitSubscribed(t, s)
	tok, err := m.Token(ctxT(t), bob)
	if err != nil || tok == "bob-expired" {
		t.Fatalf("after the outage: %q, %v", tok, err)
	}
	if tok, err := m.Token(ctxT(t), alice); err != nil || tok != "alice-valid" {
		t.Fatalf("alice after the outage: %q, %v", tok, err)
	}
}

// TestRedisRestartedEmpty: a Redis that comes back without its data: the
// log names every identity that needs a sign-in, Token says so, nothing
// crashes.
func TestRedisRestartedEmpty(t *testing.T) {
	srv := testredis.Start(t)
	logs := newSyncBuffer()
	s, err := OpenRedis(config.RedisStore{URL: srv.URL(), Prefix: "test:"}, newKey(t), slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	waitSubscribed(t, s)
	idp := newIdP(t, testidp.Options{})
	seed(t, s, idp, alice, publicClient, "alice-at", time.Now().Add(time.Hour))
	m := NewManager(s, providersFor(msProvider(idp, publicClient, "", config.FlowAuthCode)), Options{})
	if _, err := m.Token(ctxT(t), alice); err != nil {
		t.Fatal(err)
	}
	srv.RestartEmpty()
	waitFor(t, func() bool { return strings.Contains(logs.String(), "identity="+alice) })
	if !strings.Contains(logs.String(), "xoauthd login "+alice) {
		t.Errorf("log %q does not say how to fix it", logs.String())
	}
	if _, err := m.Token(ctxT(t), alice); !errors.Is(err, ErrNeedsLogin) {
		t.Fatalf("Token after the loss = %v; want needs-login", err)
	}
	if st, ok, err := s.Status(alice, time.Now()); ok || err != nil || st.State != StateNoToken {
		t.Fatalf("Status = %+v, %v, %v", st, ok, err)
	}
}

// TestRedisKeepAliveOnce: the keep-alive of two replicas refreshes an idle
// identity once: the second sees what the first stored.
func TestRedisKeepAliveOnce(t *testing.T) {
	c := newRedisCluster(t, 2, nil)
	seed(t, c.stores[0], c.idp, alice, publicClient, "idle", time.Now().Add(time.Hour))
	if err := c.stores[0].modify(alice, func(r *record, _ bool) (bool, error) {
		r.LoggedIn = time.Now().Add(-48 * time.Hour)
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, s := range c.stores { // both have the idle record cached
		mustGet(t, s, alice)
	}
	if res, err := c.ms[0].KeepAlive(ctxT(t), alice, 24*time.Hour); res != KeepaliveRefreshed || err != nil {
		t.Fatalf("first replica: %s, %v", res, err)
	}
	res, err := c.ms[1].KeepAlive(ctxT(t), alice, 24*time.Hour)
	if err != nil || (res != KeepaliveNotDue && res != KeepaliveRefreshed) {
		t.Fatalf("second replica: %s, %v", res, err)
	}
	if n := c.idp.Counts()[grantRefresh]; n != 1 {
		t.Errorf("%d refresh requests from two replicas' keep-alive, want 1", n)
	}
	if r := mustGet(t, c.stores[1], alice); r.AccessToken == "idle" {
		t.Error("the refreshed token is not stored")
	}
}
