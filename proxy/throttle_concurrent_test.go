package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCredentialsThrottleConcurrent checks that the limits bound password
// verifications when many attempts arrive at once: a guesser that opens
// hundreds of connections in parallel must not get more verifications than
// one that sends its guesses one after another.
func TestCredentialsThrottleConcurrent(t *testing.T) {
	const attempts = 200
	tests := []struct {
		name  string
		opts  CredentialOptions
		login func(i int) string
		from  func(i int) netip.Addr
		max   int32
	}{
		{"one address, many logins", CredentialOptions{AddrLimit: 5, LoginLimit: -1},
			func(i int) string { return fmt.Sprintf("guess%d", i) }, func(int) netip.Addr { return addrA }, 5},
		{"one login, many addresses", CredentialOptions{AddrLimit: -1, LoginLimit: 7},
			func(int) string { return "alice" }, func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}) }, 7},
		{"both limits", CredentialOptions{AddrLimit: 4, LoginLimit: 6},
			func(i int) string { return []string{"alice", "bob"}[i%2] }, func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 2, 0, byte(i % 3)}) }, 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gate := make(chan struct{})
			var verifies atomic.Int32
			tt.opts.Verify = func(phc, password string) (bool, error) {
				verifies.Add(1)
				<-gate // every attempt that gets this far waits here together
				return phc == "hash:"+password, nil
			}
			tt.opts.BaseDelay, tt.opts.CacheTTL, tt.opts.MaxConcurrent = -1, -1, attempts
			e := newCredEnv(t, tt.opts)
			var wg sync.WaitGroup
			var throttled, bad atomic.Int32
			for i := range attempts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					switch err := e.auth(tt.login(i), "wrong", tt.from(i)); {
					case errors.Is(err, ErrThrottled):
						throttled.Add(1)
					case errors.Is(err, ErrBadCredentials):
						bad.Add(1)
					default:
						t.Errorf("attempt %d: %v", i, err)
					}
				}()
			}
			// Let the attempts pile up at the verification, then release.
			waitFor(t, "every attempt verified or throttled", func() bool { return throttled.Load()+verifies.Load() == attempts })
			close(gate)
			wg.Wait()
			if v := verifies.Load(); v > tt.max {
				t.Errorf("%d concurrent wrong passwords cost %d verifications, want at most %d", attempts, v, tt.max)
			}
			if bad.Load() != verifies.Load() || throttled.Load()+bad.Load() != attempts {
				t.Errorf("verified %d, answered bad %d, throttled %d of %d", verifies.Load(), bad.Load(), throttled.Load(), attempts)
			}
		})
	}
}

// TestCredentialsRefundWithoutVerdict checks that an attempt that ends
// without a verdict (the client went away during the delay) is not counted
// as a failure, and that a success does not count against its login.
func TestCredentialsRefundWithoutVerdict(t *testing.T) {
	e := newCredEnv(t, CredentialOptions{AddrLimit: 2, LoginLimit: 2, CacheTTL: -1})
	sleep := e.c.sleep
	e.c.sleep = func(context.Context, time.Duration) bool { return false }
	for range 5 {
		if err := e.auth("alice", "x", addrA); err == nil || errors.Is(err, ErrBadCredentials) || errors.Is(err, ErrThrottled) {
			t.Fatalf("cancelled attempt: %v", err)
		}
	}
	e.c.sleep = sleep
	for range 5 {
		if err := e.auth("alice", "secret", addrA); err != nil {
			t.Fatalf("after cancelled attempts and successes: %v", err)
		}
	}
	if err := e.auth("alice", "x", addrA); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("first wrong password: %v", err)
	}
	if err := e.auth("alice", "x", addrB); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("second wrong password: %v", err)
	}
	if err := e.auth("alice", "secret", addrB); !errors.Is(err, ErrThrottled) {
		t.Fatalf("login after two failures: %v, want throttled", err)
	}
}
