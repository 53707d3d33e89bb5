package tokens

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/testidp"
)

// Environment of the crash-test child process.
const (
	crashChildEnv     = "XOAUTHD_TOKENS_CRASH_CHILD"
	crashStoreEnv     = "XOAUTHD_TOKENS_CRASH_STORE"
	crashKeyEnv       = "XOAUTHD_TOKENS_CRASH_KEY"
	crashAuthorityEnv = "XOAUTHD_TOKENS_CRASH_AUTHORITY"
	crashTenantEnv    = "XOAUTHD_TOKENS_CRASH_TENANT"
	crashKills        = 200
	crashWorkers      = 2
	persistedPrefix   = "persisted "
)

func fingerprint(rt string) string {
	sum := sha256.Sum256([]byte(rt))
	return hex.EncodeToString(sum[:8])
}

// TestHelperProcess is the child of TestCrashSafety: it refreshes alice's
// token against the parent's IdP in a loop, printing the fingerprint of the
// refresh token on disk after every refresh, until it is killed.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(crashChildEnv) != "1" {
		t.Skip("the child process of TestCrashSafety")
	}
	fail := func(what string, err error) {
		fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
		os.Exit(3)
	}
	key, err := hex.DecodeString(os.Getenv(crashKeyEnv))
	if err != nil {
		fail("key", err)
	}
	store, err := OpenStore(os.Getenv(crashStoreEnv), key)
	if err != nil {
		fail("opening the store", err)
	}
	prov := &config.Provider{Name: "m365", Type: "microsoft", Tenant: os.Getenv(crashTenantEnv),
		ClientID: publicClient, Authority: os.Getenv(crashAuthorityEnv)}
	// A margin of a century makes every Token call a refresh.
	m := NewManager(store, providersFor(prov), Options{Margin: 100 * 365 * 24 * time.Hour})
	for {
		if _, err := m.Token(context.Background(), alice); err != nil {
			fail("refreshing", err)
		}
		rec, ok, err := store.get(alice)
		if err != nil || !ok {
			fail("reading back", err)
		}
		fmt.Println(persistedPrefix + fingerprint(rec.RefreshToken))
	}
}

// TestCrashSafety kills a child process that refreshes and writes the
// store in a loop, at random points, crashKills times in all (crashWorkers
// children at a time, each on its own store). After every kill the store
// must decrypt, and hold either the last state the child reported as
// persisted or the one it was writing; the next child's first refresh
// proves that state's refresh token is valid.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes 200 times")
	}
	idp := newIdP(t, testidp.Options{})
	var wg sync.WaitGroup
	for w := range crashWorkers {
		wg.Go(func() {
			store, key := newStore(t)
			seed(t, store, idp, alice, publicClient, "", time.Time{})
			env := append(os.Environ(),
				crashChildEnv+"=1",
				crashStoreEnv+"="+store.Path(),
				crashKeyEnv+"="+hex.EncodeToString(key),
				crashAuthorityEnv+"="+idp.Authority(),
				crashTenantEnv+"="+idp.Tenant(),
			)
			if err := crashLoop(t, store, key, env, crashKills/crashWorkers); err != nil {
				t.Errorf("worker %d: %v", w, err)
				return
			}
			m := NewManager(store, providersFor(msProvider(idp, publicClient, "", config.FlowAuthCode)), Options{Margin: 100 * 365 * 24 * time.Hour})
			if _, err := m.Token(context.Background(), alice); err != nil {
				t.Errorf("worker %d: refresh with the final state: %v", w, err)
			}
		})
	}
	wg.Wait()
}

// crashLoop runs and kills the child kills times, checking the store after
// each kill.
func crashLoop(t *testing.T, store *Store, key []byte, env []string, kills int) error {
	last := fingerprint(mustGet(t, store, alice).RefreshToken)
	seen := map[string]bool{last: true}
	ahead := 0
	for i := range kills {
		reported, err := runAndKill(env, time.Duration(rand.IntN(8000))*time.Microsecond)
		if err != nil {
			return fmt.Errorf("kill %d: %w", i, err)
		}
		s, err := OpenStore(store.Path(), key)
		if err != nil {
			return fmt.Errorf("kill %d: store unreadable: %w", i, err)
		}
		rec, ok, err := s.get(alice)
		if err != nil || !ok {
			return fmt.Errorf("kill %d: no record (err %v)", i, err)
		}
		got := fingerprint(rec.RefreshToken)
		for _, h := range reported {
			seen[h] = true
		}
		if len(reported) > 0 {
			last = reported[len(reported)-1]
		}
		switch {
		case got == last: // the old state: the kill came before the rename
		case !seen[got]: // the new state: renamed, not yet reported
			ahead++
			seen[got], last = true, got
		default:
			return fmt.Errorf("kill %d: the store went back to an earlier state (lost write)", i)
		}
	}
	t.Logf("%d kills; %d landed between a rename and the report", kills, ahead)
	return nil
}

// runAndKill starts the child, waits until it reported its first refresh,
// lets it run for delay, kills it with SIGKILL and returns the
// fingerprints it reported.
func runAndKill(env []string, delay time.Duration) ([]string, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if h, ok := strings.CutPrefix(sc.Text(), persistedPrefix); ok {
				lines <- h
			}
		}
	}()
	var reported []string
	select {
	case h, ok := <-lines:
		if !ok {
			cmd.Wait()
			return nil, fmt.Errorf("child ended before its first refresh: %s", stderr.String())
		}
		reported = append(reported, h)
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("child made no refresh within 10 s: %s", stderr.String())
	}
	time.Sleep(delay) // a random point in the loop; nothing is asserted on timing
	if err := cmd.Process.Kill(); err != nil {
		return nil, err
	}
	for h := range lines {
		reported = append(reported, h)
	}
	cmd.Wait()
	return reported, nil
}
