package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/passhash"
	"github.com/xoauthd/xoauthd/internal/testkit"
)

// A third login (for bob's mailbox) and alice's next password.
const (
	carolLogin = "erp-carol"
	carolPass  = "local pw 3"
	alicePass2 = "local pw 1, changed"
)

// hashes memoizes argon2id hashes, which cost tens of milliseconds each. A
// new hash of the same password is another password_hash (its salt
// differs), which closes the account's sessions: so it starts from the
// hashes the rig was started with.
type hashes struct {
	t  *testing.T
	mu sync.Mutex
	m  map[string]string // password → hash
}

func newHashes(r *rig) *hashes {
	h := &hashes{t: r.t, m: map[string]string{}}
	for login, pass := range map[string]string{aliceLogin: alicePass, bobLogin: bobPass} {
		h.m[pass] = r.cfg.Account(login).PasswordHash.Reveal()
	}
	return h
}

func (h *hashes) of(password string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if v, ok := h.m[password]; ok {
		return v
	}
	v, err := passhash.Hash(password)
	if err != nil {
		h.t.Fatal(err)
	}
	h.m[password] = v
	return v
}

// watchConfig reloads the rig's daemon when the file at path changes, the
// way serve does, until the test ends.
func (r *rig) watchConfig(path string) {
	r.t.Helper()
	w, err := r.d.Watch(context.Background(), path, config.DefaultDebounce)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { w.Close() })
}

// countLog counts log lines with msg.
func (r *rig) countLog(msg string) int {
	return strings.Count(r.logs.String(), "msg=\""+msg+"\"")
}

// waitReload waits until more than before reloads were logged (as
// succeeded, or failed when failed is set) and returns how long it waited.
func (r *rig) waitReload(before int, failed bool) time.Duration {
	r.t.Helper()
	msg := "configuration reloaded"
	if failed {
		msg = "configuration problem"
	}
	start := time.Now()
	testkit.Eventually(r.t, 15*time.Second, msg, func() bool { return r.countLog(msg) > before })
	return time.Since(start)
}

// imapSession logs in through xoauthd and selects INBOX. Each connection
// comes from a loopback address of its own, so the refused logins these
// tests make on purpose never reach xoauthd's per-source throttle.
func (r *rig) imapSession(login, password string) (*imapclient.Client, error) {
	r.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: r.dc.SourceIP()}, Timeout: 10 * time.Second}
	conn, err := d.Dial("tcp", r.imap)
	if err != nil {
		r.t.Fatal(err)
	}
	c := imapclient.New(conn, nil)
	r.t.Cleanup(func() { c.Close() })
	if err := c.Login(login, password).Wait(); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (r *rig) mustIMAP(login, password string) *imapclient.Client {
	r.t.Helper()
	c, err := r.imapSession(login, password)
	if err != nil {
		r.t.Fatalf("IMAP login %s: %v", login, err)
	}
	return c
}

func (r *rig) refusedIMAP(login, password, why string) {
	r.t.Helper()
	if c, err := r.imapSession(login, password); err == nil {
		c.Close()
		r.t.Fatalf("IMAP login %s succeeded; want it refused: %s", login, why)
	}
}

// imapAlive reports whether an IMAP session still answers.
func imapAlive(c *imapclient.Client) bool { return c.Noop().Wait() == nil }

// pop3Session logs in over POP3 through xoauthd.
func (r *rig) pop3Session(login, password string) *pop3Client {
	r.t.Helper()
	c := dialPOP3(r.t, r.pop3)
	if l := c.cmd("USER %s", login); !strings.HasPrefix(l, "+OK") {
		r.t.Fatalf("USER: %q", l)
	}
	if l := c.cmd("PASS %s", password); !strings.HasPrefix(l, "+OK") {
		r.t.Fatalf("PASS: %q", l)
	}
	return c
}

// pop3Alive reports whether a POP3 session still answers NOOP.
func pop3Alive(c *pop3Client) bool {
	if _, err := io.WriteString(c.conn, "NOOP\r\n"); err != nil {
		return false
	}
	l, err := c.br.ReadString('\n')
	return err == nil && strings.HasPrefix(l, "+OK")
}

// TestReloadAccounts adds an account, changes a password and removes an
// account by replacing the file (rename over it), and checks each through
// real logins and live sessions.
func TestReloadAccounts(t *testing.T) {
	r := newRig(t)
	h := newHashes(r)
	path := r.configPath()
	r.watchConfig(path)
	aliceAcct := rigAccount{aliceLogin, h.of(alicePass), alice}
	bobAcct := rigAccount{bobLogin, h.of(bobPass), bob}
	carolAcct := rigAccount{carolLogin, h.of(carolPass), bob}

	aliceIMAP := r.mustIMAP(aliceLogin, alicePass)
	bobIMAP := r.mustIMAP(bobLogin, bobPass)
	bobPOP3 := r.pop3Session(bobLogin, bobPass)
	r.refusedIMAP(carolLogin, carolPass, "carol is not configured yet")

	// Add carol.
	n := r.countLog("configuration reloaded")
	start := time.Now()
	r.replaceConfig(path, r.configWith([]rigAccount{aliceAcct, bobAcct, carolAcct}))
	r.waitReload(n, false)
	carolIMAP := r.mustIMAP(carolLogin, carolPass)
	t.Logf("a new account logged in %v after its file was renamed into place", time.Since(start).Round(time.Millisecond))
	if !imapAlive(aliceIMAP) || !imapAlive(bobIMAP) || !pop3Alive(bobPOP3) {
		t.Fatal("adding an account cut a session")
	}

	// Change alice's password: her session ends, nobody else's.
	n = r.countLog("configuration reloaded")
	aliceAcct.passwordHash = h.of(alicePass2)
	r.replaceConfig(path, r.configWith([]rigAccount{aliceAcct, bobAcct, carolAcct}))
	r.waitReload(n, false)
	if imapAlive(aliceIMAP) {
		t.Fatal("alice's IMAP session survived the change of her password")
	}
	if !imapAlive(bobIMAP) || !pop3Alive(bobPOP3) || !imapAlive(carolIMAP) {
		t.Fatal("changing alice's password cut another account's session")
	}
	r.refusedIMAP(aliceLogin, alicePass, "the old password after the change")
	aliceIMAP = r.mustIMAP(aliceLogin, alicePass2)

	// Remove bob: his IMAP and POP3 sessions end; carol (bob's mailbox
	// under another login) and alice go on.
	n = r.countLog("configuration reloaded")
	r.replaceConfig(path, r.configWith([]rigAccount{aliceAcct, carolAcct}))
	r.waitReload(n, false)
	if imapAlive(bobIMAP) {
		t.Fatal("bob's IMAP session survived his removal")
	}
	if _, err := bobPOP3.br.ReadString('\n'); err == nil {
		t.Fatal("bob's POP3 connection is still open after his removal")
	}
	if !imapAlive(aliceIMAP) || !imapAlive(carolIMAP) {
		t.Fatal("removing bob cut another account's session")
	}
	r.refusedIMAP(bobLogin, bobPass, "bob was removed")
	if !strings.Contains(r.logs.String(), "login="+bobLogin+" reason=\"the account was removed from the configuration\" sessions=2") {
		t.Error("the closing of bob's two sessions was not logged")
	}
}

// TestReloadBrokenYAML writes a broken file in place: every problem is
// logged with its line, and the previous mapping stays in force.
func TestReloadBrokenYAML(t *testing.T) {
	r := newRig(t)
	path := r.configPath()
	r.watchConfig(path)
	aliceIMAP := r.mustIMAP(aliceLogin, alicePass)

	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	broken := string(good) + "admin: {listen: 127.0.0.1:9925, colour: blue}\n"
	badLine := strings.Count(broken, "\n")
	n := r.countLog("configuration problem")
	if err := os.WriteFile(path, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	r.waitReload(n, true)
	logs := r.logs.String()
	if !strings.Contains(logs, fmt.Sprintf("level=ERROR msg=\"configuration problem\" config=%s line=%d", path, badLine)) {
		t.Fatalf("the problem on line %d was not logged at ERROR with its line", badLine)
	}
	if !strings.Contains(logs, "previous configuration stays in force") {
		t.Error("the log does not say the previous configuration stays")
	}
	if !imapAlive(aliceIMAP) {
		t.Fatal("a broken file cut a session")
	}
	r.mustIMAP(aliceLogin, alicePass)
	r.mustIMAP(bobLogin, bobPass)

	// Fixed again.
	n = r.countLog("configuration reloaded")
	r.replaceConfig(path, string(good))
	r.waitReload(n, false)
	r.mustIMAP(aliceLogin, alicePass)
}

// TestReloadConfigMapSwap mounts the configuration the way a Kubernetes
// ConfigMap volume does (xoauthd.yaml → ..data/xoauthd.yaml, ..data → a
// timestamped directory) and swaps ..data twice.
func TestReloadConfigMapSwap(t *testing.T) {
	r := newRig(t)
	h := newHashes(r)
	dir := filepath.Join(r.dir, "configmap")
	version := func(name string, accounts []rigAccount) string {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "xoauthd.yaml"), []byte(r.configWith(accounts)), 0o600); err != nil {
			t.Fatal(err)
		}
		return name
	}
	swap := func(name string) {
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	aliceAcct := rigAccount{aliceLogin, h.of(alicePass), alice}
	bobAcct := rigAccount{bobLogin, h.of(bobPass), bob}
	carolAcct := rigAccount{carolLogin, h.of(carolPass), bob}
	v1 := version("..2025_06_01_10_00_00.000000001", []rigAccount{aliceAcct, bobAcct})
	if err := os.Symlink(v1, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "xoauthd.yaml")
	if err := os.Symlink(filepath.Join("..data", "xoauthd.yaml"), path); err != nil {
		t.Fatal(err)
	}
	r.watchConfig(path)
	aliceIMAP := r.mustIMAP(aliceLogin, alicePass)

	n := r.countLog("configuration reloaded")
	swap(version("..2025_06_01_10_05_00.000000002", []rigAccount{aliceAcct, bobAcct, carolAcct}))
	if err := os.RemoveAll(filepath.Join(dir, v1)); err != nil {
		t.Fatal(err)
	}
	r.waitReload(n, false)
	r.mustIMAP(carolLogin, carolPass)

	n = r.countLog("configuration reloaded")
	swap(version("..2025_06_01_10_10_00.000000003", []rigAccount{aliceAcct, bobAcct}))
	r.waitReload(n, false)
	r.refusedIMAP(carolLogin, carolPass, "the second swap removed carol")
	if !imapAlive(aliceIMAP) {
		t.Fatal("a ConfigMap swap cut an unaffected session")
	}
}

// TestReloadUnderLoad reloads 100 times while 20 IMAP sessions fetch mail
// through xoauthd: no session may drop.
func TestReloadUnderLoad(t *testing.T) {
	const (
		sessions = 20 // Dovecot allows 10 per user and address: 10 each
		reloads  = 100
	)
	r := newRig(t)
	h := newHashes(r)
	msgs := map[string][]byte{aliceLogin: message("load-alice", 1000), bobLogin: message("load-bob", 1000)}
	if err := r.dc.Deliver(alice, msgs[aliceLogin]); err != nil {
		t.Fatal(err)
	}
	if err := r.dc.Deliver(bob, msgs[bobLogin]); err != nil {
		t.Fatal(err)
	}
	accounts := []rigAccount{{aliceLogin, h.of(alicePass), alice}, {bobLogin, h.of(bobPass), bob}}
	// The files alternate between carol there and gone, in changing order.
	files := []string{
		r.configWith(append(accounts, rigAccount{carolLogin, h.of(carolPass), bob})),
		r.configWith([]rigAccount{accounts[1], accounts[0]}),
	}

	var fetches [sessions]atomic.Int64
	stop := make(chan struct{})
	errs := make(chan error, sessions)
	var wg sync.WaitGroup
	for i := range sessions {
		login, pass := aliceLogin, alicePass
		if i%2 == 1 {
			login, pass = bobLogin, bobPass
		}
		c := r.mustIMAP(login, pass)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- fetchLoop(c, msgs[login], &fetches[i], stop)
		}()
	}
	allFetched := func(min []int64) func() bool {
		return func() bool {
			for i := range fetches {
				if fetches[i].Load() <= min[i] {
					return false
				}
			}
			return true
		}
	}
	testkit.Eventually(t, 15*time.Second, "every session to fetch", allFetched(make([]int64, sessions)))

	path := r.configPath()
	for i := range reloads {
		r.replaceConfig(path, files[i%2])
		if err := r.d.ReloadFile(path); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
	}
	after := make([]int64, sessions)
	for i := range fetches {
		after[i] = fetches[i].Load()
	}
	testkit.Eventually(t, 15*time.Second, "every session to fetch after the reloads", allFetched(after))
	close(stop)
	wg.Wait()
	close(errs)
	dropped := 0
	for err := range errs {
		if err != nil {
			dropped++
			t.Errorf("session dropped: %v", err)
		}
	}
	total := int64(0)
	for i := range fetches {
		total += fetches[i].Load()
	}
	t.Logf("%d reloads, %d sessions, %d fetches, %d dropped", r.countLog("configuration reloaded"), sessions, total, dropped)
	if got := r.countLog("configuration reloaded"); got != reloads {
		t.Errorf("%d reloads logged, want %d", got, reloads)
	}
}

// fetchLoop fetches message 1 until stop is closed, checking every byte,
// and then logs out; it returns the first failure.
func fetchLoop(c *imapclient.Client, want []byte, count *atomic.Int64, stop <-chan struct{}) error {
	section := &imap.FetchItemBodySection{Peek: true}
	opts := &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{section}}
	for {
		select {
		case <-stop:
			return c.Logout().Wait()
		default:
		}
		msgs, err := c.Fetch(imap.SeqSetNum(1), opts).Collect()
		if err != nil {
			return err
		}
		if len(msgs) != 1 || !bytes.Equal(msgs[0].FindBodySection(section), want) {
			return fmt.Errorf("fetch %d returned other bytes", count.Load()+1)
		}
		count.Add(1)
	}
}
