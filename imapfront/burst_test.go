package imapfront

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/xoauthd/xoauthd/internal/memupstream"
	"github.com/xoauthd/xoauthd/internal/passhash"
	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/proxy"
)

// TestLoginBurstOfCorrectPasswords starts 40 go-imap clients on 127.0.0.1
// that log in at the same moment with the right password, as an ERP's
// worker pool does when it starts, through the real credential check (real
// argon2id, default limits). Every one must be logged in: concurrency is
// not a failure, and the 40 share one argon2id computation.
//
// To make "the same moment" certain, the account lookup (the first step
// of a password check) holds every attempt until all 40 are in it or have
// been answered.
func TestLoginBurstOfCorrectPasswords(t *testing.T) {
	const clients = 40
	hash, err := passhash.Hash(testPassword)
	if err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	var entered, answered, verifies atomic.Int32
	lookup := func(login string) (proxy.Account, string, bool) {
		entered.Add(1)
		<-gate
		return proxy.Account{Login: login, Identity: testIdentity, Mailbox: testMailbox}, hash, login == testLogin
	}
	creds := proxy.NewCredentials(lookup, proxy.CredentialOptions{Verify: func(phc, password string) (bool, error) {
		verifies.Add(1)
		return passhash.Verify(phc, password)
	}})
	mem := memupstream.MustStart(t, memupstream.Options{})
	mem.AddUser(testMailbox)
	d, err := proxy.NewDialer(mem.Addr(), proxy.TLSImplicit, mem.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	f := startFront(t, Options{Gateway: &proxy.Gateway{Auth: creds, Tokens: &fakeTokens{token: "good"},
		Upstream: func(proxy.Account) (*proxy.Dialer, error) { return d, nil }}})

	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- burstLogin(f.addr, &answered)
		}()
	}
	testkit.Eventually(t, ioTimeout, "every login held in the lookup or answered", func() bool {
		return entered.Load()+answered.Load() == clients
	})
	close(gate)
	wg.Wait()
	close(errs)
	var refused int
	for err := range errs {
		if err != nil {
			refused++
			if refused == 1 {
				t.Errorf("a correct login was refused: %v", err)
			}
		}
	}
	if refused > 0 {
		t.Errorf("%d of %d concurrent logins with the right password were refused", refused, clients)
	}
	if n := verifies.Load(); n != 1 {
		t.Errorf("%d concurrent logins with one password cost %d argon2id verifications, want 1", clients, n)
	}
}

// burstLogin logs in with go-imap's client and logs out; answered counts
// the logins that got their reply.
func burstLogin(addr string, answered *atomic.Int32) error {
	conn, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		return err
	}
	_ = conn.SetDeadline(time.Now().Add(3 * ioTimeout))
	c := imapclient.New(conn, nil)
	defer c.Close()
	err = c.Login(testLogin, testPassword).Wait()
	answered.Add(1)
	if err != nil {
		return err
	}
	return c.Logout().Wait()
}
