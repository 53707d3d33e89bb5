package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/testidp"
	"github.com/xoauthd/xoauthd/internal/testredis"
	"github.com/xoauthd/xoauthd/internal/testupstream"
	"github.com/xoauthd/xoauthd/proxy"
	"github.com/xoauthd/xoauthd/tokens"
)

// redisCluster is one identity provider, one Dovecot, one Redis and
// several xoauthd daemons (each a rig with its own listeners and
// configuration) that share their identities through the Redis.
type redisCluster struct {
	t       *testing.T
	idp     *testidp.IdP
	dc      *testupstream.Dovecot
	redis   *testredis.Server
	keyFile string // the store key every replica reads
	nodes   []*rig
}

// newRedisCluster prepares n replicas; start starts their daemons, after
// the test signed identities in.
func newRedisCluster(t *testing.T, n int) *redisCluster {
	t.Helper()
	c := &redisCluster{t: t, redis: testredis.Start(t)}
	c.idp = testidp.New(t, testidp.Options{})
	c.idp.AddClient(testidp.Client{ID: clientID, Public: true})
	c.idp.AddUser(alice)
	c.idp.AddUser(bob)
	// 100 sessions of one user at once, from xoauthd's one address.
	c.dc = testupstream.New(t, testupstream.Options{JWTKey: c.idp.SigningKey(), MaxUserIPConnections: 200})
	c.keyFile = filepath.Join(t.TempDir(), "store.key")
	key := make([]byte, tokens.KeySize)
	_, _ = rand.Read(key)
	if err := os.WriteFile(c.keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for range n {
		r := &rig{t: t, dir: t.TempDir(), logs: &syncBuffer{}, idp: c.idp, dc: c.dc}
		// Port 0: the kernel picks, so no other process can take a port
		// between choosing and listening; start reads the bound ones.
		r.imap, r.pop3, r.smtp = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		yaml := strings.Replace(r.configYAML(), "  key: ${file:"+r.dir+"/store.key}\n",
			"  key: ${file:"+c.keyFile+"}\n  backend: redis\n  redis: {url: \""+c.redis.URL()+"\"}\n", 1)
		yaml = strings.Replace(yaml, "log: {level: debug}\n", "log: {level: debug}\nadmin: {listen: \"127.0.0.1:0\"}\n", 1)
		// Up to 100 sessions of one identity at once on one replica.
		yaml = strings.Replace(yaml, "{protocol: imap, ", "{protocol: imap, max_upstream_per_identity: 200, ", 1)
		if err := os.WriteFile(r.configPath(), []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(r.configPath())
		if err != nil {
			t.Fatalf("loading the test configuration: %v", err)
		}
		if !cfg.Store.IsRedis() {
			t.Fatal("the replica's configuration does not use the redis backend")
		}
		r.cfg = cfg
		c.nodes = append(c.nodes, r)
	}
	return c
}

// start starts every replica's daemon; o may replace a replica's token
// manager or tune its credential check (throttling is on, with its
// counters in the shared Redis).
func (c *redisCluster) start(o func(i int) rigOptions) {
	for i, r := range c.nodes {
		var opts rigOptions
		if o != nil {
			opts = o(i)
		}
		r.startDaemon(opts)
		r.imap, r.pop3, r.smtp = r.d.Addr("imap"), r.d.Addr("pop3"), r.d.Addr("smtp")
	}
}

// loginWithLifetime signs identity in (stored in Redis) with an access
// token that lives for lifetime (negative: already expired), then lets the
// identity provider issue hour-long tokens again.
func (c *redisCluster) loginWithLifetime(identity string, lifetime time.Duration) {
	c.idp.SetAccessTokenLifetime(lifetime)
	c.nodes[0].login(identity)
	c.idp.SetAccessTokenLifetime(time.Hour)
}

// imapLogins logs login in n times at once, spread over the replicas, and
// returns the replies.
func (c *redisCluster) imapLogins(n int, login, password string) []string {
	replies := make([]string, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			replies[i] = c.nodes[i%len(c.nodes)].attemptLogin("imap", login, password, nil)
		})
	}
	close(start)
	wg.Wait()
	return replies
}

// expectAll fails unless every reply starts with want.
func expectAll(t *testing.T, what string, replies []string, want string) {
	t.Helper()
	for i, r := range replies {
		if !strings.HasPrefix(r, want) {
			t.Fatalf("%s: login %d of %d answered %q, want %q", what, i+1, len(replies), r, want)
		}
	}
}

// readyz returns a replica's /readyz status and body.
func readyz(t *testing.T, r *rig) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + r.d.AdminAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRedisReplicasSingleFlightRefresh: three replicas share one Redis; 100
// IMAP logins at once, spread over them, on an identity whose access token
// has just expired: exactly one refresh reaches the identity provider and
// all 100 are logged in at Dovecot.
func TestRedisReplicasSingleFlightRefresh(t *testing.T) {
	c := newRedisCluster(t, 3)
	c.loginWithLifetime(alice, time.Hour)
	c.start(nil)
	// One login per replica first, so each has checked the local password
	// once (argon2id, cached) and the 100 logins below wait on tokens only.
	for _, r := range c.nodes {
		if got := r.attemptLogin("imap", aliceLogin, alicePass, nil); !strings.HasPrefix(got, successReply["imap"]) {
			t.Fatalf("warming up: %q", got)
		}
	}
	// A new sign-in stores a token that has just expired; every replica
	// hears of it.
	c.loginWithLifetime(alice, -time.Second)
	for i, r := range c.nodes {
		waitUntil(t, fmt.Sprintf("replica %d sees the expired token", i), func() bool {
			st, ok, err := r.d.Tokens().Status(alice)
			return err == nil && ok && st.State == tokens.StateExpired
		})
	}
	before := c.idp.Counts()[grantRefresh]
	replies := c.imapLogins(100, aliceLogin, alicePass)
	expectAll(t, "expired token", replies, successReply["imap"])
	if n := c.idp.Counts()[grantRefresh] - before; n != 1 {
		t.Errorf("%d refresh requests for 100 logins over 3 replicas, want exactly 1", n)
	}
	for i, r := range c.nodes {
		if code, body := readyz(t, r); code != http.StatusOK {
			t.Errorf("replica %d /readyz: %d %s", i, code, body)
		}
	}
}

// grantRefresh is the refresh grant as the identity provider counts it.
const grantRefresh = "refresh_token"

// TestRedisReplicaStallsHoldingTheLock: replica 0 takes alice's refresh
// lock and never gets its request out (killed or stalled). Replica 1 waits
// until the lock expires and refreshes; replica 2 uses what it stored.
// When replica 0 wakes up, it does not replace the stored token set, and
// its login uses the stored token, not an older one.
func TestRedisReplicaStallsHoldingTheLock(t *testing.T) {
	c := newRedisCluster(t, 3)
	c.loginWithLifetime(alice, -time.Second)
	gate := testidp.NewGate()
	t.Cleanup(gate.Open)
	c.start(func(i int) rigOptions {
		if i != 0 {
			return rigOptions{}
		}
		return rigOptions{tokens: func(r *rig, log *slog.Logger) proxy.TokenSource {
			key, _, err := tokens.LoadKey(r.cfg.Store)
			if err != nil {
				r.t.Fatal(err)
			}
			store, err := tokens.OpenBackend(r.cfg.Store, key, log)
			if err != nil {
				r.t.Fatal(err)
			}
			r.t.Cleanup(func() { store.Close() })
			providers := func(string) (*config.Provider, error) { return r.cfg.Providers["test"], nil }
			return tokens.NewManager(store, providers, tokens.Options{Logger: log,
				HTTPClient: &http.Client{Transport: gate}, RefreshLockTTL: time.Second, RequestTimeout: time.Minute})
		}}
	})
	before := c.idp.Counts()[grantRefresh]
	stalled := make(chan string, 1)
	go func() { stalled <- c.nodes[0].attemptLogin("imap", aliceLogin, alicePass, nil) }()
	<-gate.Arrived // replica 0 holds the lock, its request is stuck

	if got := c.nodes[1].attemptLogin("imap", aliceLogin, alicePass, nil); !strings.HasPrefix(got, successReply["imap"]) {
		t.Fatalf("replica 1 while replica 0 holds the lock: %q", got)
	}
	if n := c.idp.Counts()[grantRefresh] - before; n != 1 {
		t.Fatalf("%d refresh requests after the lock expired, want 1", n)
	}
	stored := storedStatus(t, c, alice)
	if got := c.nodes[2].attemptLogin("imap", aliceLogin, alicePass, nil); !strings.HasPrefix(got, successReply["imap"]) {
		t.Fatalf("replica 2: %q", got)
	}
	gate.Open()
	if got := <-stalled; !strings.HasPrefix(got, successReply["imap"]) {
		t.Fatalf("the stalled replica's login: %q", got)
	}
	after := storedStatus(t, c, alice)
	if !after.LastRefresh.Equal(stored.LastRefresh) || !after.Expiry.Equal(stored.Expiry) {
		t.Errorf("the stalled replica replaced the stored token set: %+v, was %+v", after, stored)
	}
	c.nodes[0].expectLog(t, "a newer one was stored meanwhile", alice)
}

// storedStatus reads identity's state from the cluster's Redis.
func storedStatus(t *testing.T, c *redisCluster, identity string) tokens.Status {
	t.Helper()
	key, _, err := tokens.LoadKey(c.nodes[0].cfg.Store)
	if err != nil {
		t.Fatal(err)
	}
	store, err := tokens.OpenBackend(c.nodes[0].cfg.Store, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	st, ok, err := store.Status(identity, time.Now())
	if err != nil || !ok {
		t.Fatalf("status of %s: %v, %v", identity, ok, err)
	}
	return st
}

// TestRedisOutage: Redis goes away under three replicas. Logins with a
// cached access token keep working; a login that needs a refresh gets the
// temporary reply, never "authentication failed"; /readyz says why and
// stays ready. Redis comes back: every login works, no new sign-in.
func TestRedisOutage(t *testing.T) {
	c := newRedisCluster(t, 3)
	c.loginWithLifetime(bob, -time.Second) // needs a refresh at its next login
	c.loginWithLifetime(alice, time.Hour)
	c.start(nil)
	signIns := c.idp.Counts()["authorization_code"]
	for i, r := range c.nodes { // each replica has both token sets cached
		if code, body := readyz(t, r); code != http.StatusOK {
			t.Fatalf("replica %d /readyz before the outage: %d %s", i, code, body)
		}
	}
	expectAll(t, "before the outage", c.imapLogins(6, aliceLogin, alicePass), successReply["imap"])

	c.redis.Stop()
	expectAll(t, "cached token during the outage", c.imapLogins(30, aliceLogin, alicePass), successReply["imap"])
	expectAll(t, "refresh during the outage", c.imapLogins(6, bobLogin, bobPass), temporaryReply["imap"])
	refreshes := c.idp.Counts()[grantRefresh]
	if refreshes != 0 {
		t.Errorf("%d refresh requests while Redis was down; want none (a rotated token could not be stored)", refreshes)
	}
	for i, r := range c.nodes {
		code, body := readyz(t, r)
		if code != http.StatusOK || !strings.Contains(body, "cannot be reached") {
			t.Errorf("replica %d /readyz during the outage: %d %q; want ready with a note on the store", i, code, body)
		}
	}
	c.nodes[0].expectLog(t, "result=error", bobLogin)

	c.redis.Restart()
	waitUntil(t, "bob logs in once Redis is back", func() bool {
		return strings.HasPrefix(c.nodes[0].attemptLogin("imap", bobLogin, bobPass, nil), successReply["imap"])
	})
	expectAll(t, "after the outage", c.imapLogins(30, bobLogin, bobPass), successReply["imap"])
	expectAll(t, "after the outage", c.imapLogins(30, aliceLogin, alicePass), successReply["imap"])
	if n := c.idp.Counts()[grantRefresh]; n != 1 {
		t.Errorf("%d refresh requests after the outage, want 1", n)
	}
	if n := c.idp.Counts()["authorization_code"]; n != signIns {
		t.Errorf("%d sign-ins, want %d: none new after the outage", n, signIns)
	}
}

// TestRedisRestartedEmpty: a Redis without persistence comes back empty:
// each replica's log names the identity that needs a sign-in, logins get
// the reply that a person must sign in again, nothing crashes, and a new
// login on any replica serves all of them.
func TestRedisRestartedEmpty(t *testing.T) {
	c := newRedisCluster(t, 2)
	c.loginWithLifetime(alice, time.Hour)
	c.start(nil)
	expectAll(t, "before", c.imapLogins(4, aliceLogin, alicePass), successReply["imap"])
	c.redis.RestartEmpty()
	for _, r := range c.nodes {
		waitUntil(t, "the replica logs the identity Redis lost", func() bool {
			return r.hasLog("has no tokens for an identity any more", strings.ToLower(alice), "xoauthd login")
		})
	}
	expectAll(t, "after the loss", c.imapLogins(4, aliceLogin, alicePass), "a NO [CONTACTADMIN]")
	_, body := readyz(t, c.nodes[1])
	if !strings.Contains(body, "identity "+alice+" is not logged in") {
		t.Errorf("/readyz does not name the identity: %q", body)
	}
	c.nodes[1].login(alice)
	expectAll(t, "after a new login", c.imapLogins(4, aliceLogin, alicePass), successReply["imap"])
}

// TestRedisReplicasShareLoginThrottle: the failed-login counters live in
// the shared Redis, so wrong passwords spread over two replicas count
// together: after the limit, the next login on either replica is refused
// without a password check, even with the right password.
func TestRedisReplicasShareLoginThrottle(t *testing.T) {
	c := newRedisCluster(t, 2)
	c.loginWithLifetime(alice, time.Hour)
	const limit = 3
	c.start(func(int) rigOptions {
		return rigOptions{creds: proxy.CredentialOptions{LoginLimit: limit, AddrLimit: -1, BaseDelay: -1}}
	})
	for i := range limit {
		if got := c.nodes[i%2].attemptLogin("imap", aliceLogin, "wrong password", nil); !strings.HasPrefix(got, "a NO [AUTHENTICATIONFAILED]") {
			t.Fatalf("wrong password %d on replica %d: %q", i+1, i%2, got)
		}
	}
	for i, r := range c.nodes {
		got := r.attemptLogin("imap", aliceLogin, alicePass, nil)
		if !strings.HasPrefix(got, "a NO ") || !strings.Contains(got, "Too many failed logins") {
			t.Errorf("replica %d after %d failures over both: %q; want the throttled reply", i, limit, got)
		}
	}
	c.nodes[1].expectLog(t, "throttled after failed logins", aliceLogin)
}
