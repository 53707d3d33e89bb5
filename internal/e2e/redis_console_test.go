package e2e

import (
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/passhash"
)

// consolePassword is the console password of the replicas in
// TestRedisConsole.
const consolePassword = "console pw"

// enableConsole turns the console on in every replica's configuration
// (before start).
func (c *redisCluster) enableConsole() {
	hash, err := passhash.Hash(consolePassword)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, r := range c.nodes {
		b, err := os.ReadFile(r.configPath())
		if err != nil {
			c.t.Fatal(err)
		}
		const admin = `admin: {listen: "127.0.0.1:0"}`
		if !strings.Contains(string(b), admin) {
			c.t.Fatalf("the replica's configuration has no %s", admin)
		}
		yaml := strings.Replace(string(b), admin, `admin: {listen: "127.0.0.1:0", password_hash: "`+hash+`"}`, 1)
		if err := os.WriteFile(r.configPath(), []byte(yaml), 0o600); err != nil {
			c.t.Fatal(err)
		}
		if r.cfg, err = config.Load(r.configPath()); err != nil {
			c.t.Fatal(err)
		}
	}
}

// consoleClient is a browser signed in to one replica's console.
type consoleClient struct {
	t    *testing.T
	base string
	http *http.Client
	csrf string // of the signed-in session
}

// csrfField finds the CSRF token in a console page.
var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// openConsole signs in to r's console.
func openConsole(t *testing.T, r *rig) *consoleClient {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	cc := &consoleClient{t: t, base: "http://" + r.d.AdminAddr(), http: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
	m := csrfField.FindStringSubmatch(cc.get("/signin"))
	if m == nil {
		t.Fatal("the console's sign-in page has no form")
	}
	home := cc.post("/signin", url.Values{"csrf": {m[1]}, "password": {consolePassword}})
	if m = csrfField.FindStringSubmatch(home); m == nil || !strings.Contains(home, "Accounts") {
		t.Fatalf("signing in to the console did not lead to the accounts page:\n%s", home)
	}
	cc.csrf = m[1]
	return cc
}

// get returns the page at path (HTML entities decoded).
func (cc *consoleClient) get(path string) string {
	cc.t.Helper()
	return cc.read(cc.http.Get(cc.base + path))
}

// post posts form to path and returns the page it leads to.
func (cc *consoleClient) post(path string, form url.Values) string {
	cc.t.Helper()
	return cc.read(cc.http.PostForm(cc.base+path, form))
}

func (cc *consoleClient) read(resp *http.Response, err error) string {
	cc.t.Helper()
	if err != nil {
		cc.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		cc.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cc.t.Fatalf("%s %s: %d\n%s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, b)
	}
	return html.UnescapeString(string(b))
}

// TestRedisConsole: the console of a replica on the redis backend shows
// the token state stored in Redis, also of an identity another process
// signed in and refreshed, and its sign-out of an identity removes the
// tokens from Redis: the other replica sees them gone and its logins get
// the reply that a person must sign in, though it had the access token in
// memory.
func TestRedisConsole(t *testing.T) {
	c := newRedisCluster(t, 2)
	c.enableConsole()
	c.loginWithLifetime(alice, -time.Second) // expired: the first login refreshes it
	c.start(nil)
	cc := openConsole(t, c.nodes[1])

	home := cc.get("/")
	for _, want := range []string{"erp-alice", "Signed in as " + alice + ". The access token expired", "erp-bob", "Not signed in: press Connect."} {
		if !strings.Contains(home, want) {
			t.Errorf("before any login, the accounts page lacks %q:\n%s", want, home)
		}
	}
	// Replica 0 refreshes alice's token; replica 1's console shows what it
	// stored.
	if got := c.nodes[0].attemptLogin("imap", aliceLogin, alicePass, nil); !strings.HasPrefix(got, successReply["imap"]) {
		t.Fatalf("alice's login on replica 0: %q", got)
	}
	waitUntil(t, "replica 1's console shows the refreshed token", func() bool {
		page := cc.get("/account/" + aliceLogin)
		return strings.Contains(page, "Signed in as "+alice+". The access token expires ") && strings.Contains(page, "(in 1h)")
	})
	for i, r := range c.nodes { // both replicas use the token (and hold it in memory)
		if got := r.attemptLogin("imap", aliceLogin, alicePass, nil); !strings.HasPrefix(got, successReply["imap"]) {
			t.Fatalf("alice's login on replica %d: %q", i, got)
		}
	}
	refreshes := c.idp.Counts()[grantRefresh]
	if refreshes != 1 {
		t.Errorf("%d refresh requests for alice's logins on both replicas, want 1", refreshes)
	}

	// Sign alice out in replica 1's console.
	confirm := cc.get("/identity/signout?identity=" + url.QueryEscape(alice) + "&provider=test")
	if !strings.Contains(confirm, "Remove the stored tokens of <strong>"+alice+"</strong>?") {
		t.Fatalf("the sign-out confirmation:\n%s", confirm)
	}
	home = cc.post("/identity/signout", url.Values{"csrf": {cc.csrf}, "identity": {alice}, "provider": {"test"}})
	if !strings.Contains(home, "Removed the tokens of "+alice) {
		t.Errorf("the sign-out's notice is missing:\n%s", home)
	}
	if !strings.Contains(cc.get("/account/"+aliceLogin), "Not signed in: press Connect.") {
		t.Error("after the sign-out, alice's account page does not say she is not signed in")
	}
	store := openClusterStore(t, c)
	if _, ok, err := store.Status(alice, time.Now()); ok || err != nil {
		t.Fatalf("after the console's sign-out Redis still has alice: %v, %v", ok, err)
	}
	if _, ok, err := store.Status(bob, time.Now()); ok || err != nil {
		t.Fatalf("bob, never signed in, is in Redis: %v, %v", ok, err)
	}
	// Replica 0 had alice's valid access token in memory: it sees the
	// sign-out and refuses her logins without asking the provider.
	waitUntil(t, "replica 0 sees alice signed out", func() bool {
		_, ok, err := c.nodes[0].d.Tokens().Status(alice)
		return err == nil && !ok
	})
	for i, r := range c.nodes {
		if got := r.attemptLogin("imap", aliceLogin, alicePass, nil); !strings.HasPrefix(got, "a NO [CONTACTADMIN]") {
			t.Errorf("alice's login on replica %d after the sign-out: %q; want the reply that she must sign in", i, got)
		}
	}
	if n := c.idp.Counts()[grantRefresh]; n != refreshes {
		t.Errorf("%d refresh requests after the sign-out, want still %d", n, refreshes)
	}
	// Replica 0's console says so too.
	if home := openConsole(t, c.nodes[0]).get("/"); strings.Contains(home, "Signed in as "+alice) {
		t.Errorf("replica 0's console still shows alice signed in:\n%s", home)
	}
}
