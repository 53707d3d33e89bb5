package tokens

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/testidp"
)

// keeperWait bounds every wait for the Keeper in these tests.
const keeperWait = 10 * time.Second

// timerRequest is one After call of a Keeper under test.
type timerRequest struct {
	d    time.Duration
	fire chan time.Time
}

// keeperRig drives a Keeper: its After blocks until the test takes the
// request, and its results arrive on a channel.
type keeperRig struct {
	idp     *testidp.IdP
	store   *Store
	clock   *fakeClock
	m       *Manager
	asked   chan timerRequest
	results chan keepaliveEvent
	stopped chan struct{} // closed by stop when the test ends: After stops blocking
	stop    func()
	pending *timerRequest // a wait expect took while looking for a result
	on      atomic.Int64  // the interval in force, as a time.Duration
}

type keepaliveEvent struct {
	identity, result string
	err              error
}

const appIdentity = "app@contoso.onmicrosoft.com" // served by a client-credentials provider

func newKeeperRig(t *testing.T) *keeperRig {
	t.Helper()
	r := &keeperRig{idp: newIdP(t, testidp.Options{}), clock: &fakeClock{},
		asked: make(chan timerRequest), results: make(chan keepaliveEvent, 100), stopped: make(chan struct{})}
	r.stop = sync.OnceFunc(func() { close(r.stopped) })
	t.Cleanup(r.stop)
	r.store, _ = newStore(t)
	user := msProvider(r.idp, publicClient, "", config.FlowAuthCode)
	app := msProvider(r.idp, confClient, confSecret, config.FlowClientCredentials)
	app.Name = "app"
	r.m = NewManager(r.store, func(identity string) (*config.Provider, error) {
		if identity == appIdentity {
			return app, nil
		}
		return user, nil
	}, Options{Now: r.clock.Now, RequestTimeout: 5 * time.Second})
	r.on.Store(int64(24 * time.Hour))
	return r
}

// keeper returns a Keeper over the rig for identities, with a predictable
// jitter (half the range).
func (r *keeperRig) keeper(spacing time.Duration, identities ...string) *Keeper {
	return NewKeeper(r.m, KeeperOptions{
		Interval:   func() time.Duration { return time.Duration(r.on.Load()) },
		Identities: func() []string { return identities },
		Spacing:    spacing,
		OnResult: func(identity, result string, err error) {
			r.results <- keepaliveEvent{identity, result, err}
		},
		After: func(d time.Duration) <-chan time.Time {
			c := make(chan time.Time, 1)
			select {
			case r.asked <- timerRequest{d, c}:
			case <-r.stopped:
			}
			return c
		},
		Jitter: func(n time.Duration) time.Duration { return n / 2 },
	})
}

// run starts k until the test ends.
func (r *keeperRig) run(t *testing.T, k *Keeper) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		k.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		r.stop()
		<-done
	})
}

// take takes the Keeper's next wait and checks its length; the wait
// goes on until the test fires it.
func (r *keeperRig) take(t *testing.T, want time.Duration) timerRequest {
	t.Helper()
	if req := r.pending; req != nil {
		r.pending = nil
		if req.d != want {
			t.Fatalf("keeper waits %v, want %v", req.d, want)
		}
		return *req
	}
	select {
	case req := <-r.asked:
		if req.d != want {
			t.Fatalf("keeper waits %v, want %v", req.d, want)
		}
		return req
	case ev := <-r.results:
		t.Fatalf("result %+v while expecting a wait of %v", ev, want)
	case <-time.After(keeperWait):
		t.Fatalf("keeper did not wait for %v", want)
	}
	return timerRequest{}
}

// fire takes the Keeper's next wait, checks its length and ends it.
func (r *keeperRig) fire(t *testing.T, want time.Duration) {
	t.Helper()
	r.take(t, want).fire <- time.Now()
}

// expect takes the next result and checks it. Results are buffered and
// come before the Keeper's next wait, so one that is there wins.
func (r *keeperRig) expect(t *testing.T, identity, result string) keepaliveEvent {
	t.Helper()
	check := func(ev keepaliveEvent) keepaliveEvent {
		t.Helper()
		if ev.identity != identity || ev.result != result {
			t.Fatalf("result %s %s (%v), want %s %s", ev.identity, ev.result, ev.err, identity, result)
		}
		return ev
	}
	select {
	case ev := <-r.results:
		return check(ev)
	default:
	}
	select {
	case ev := <-r.results:
		return check(ev)
	case req := <-r.asked:
		select {
		case ev := <-r.results: // sent just before the wait began
			r.pending = &req
			return check(ev)
		default:
		}
		t.Fatalf("keeper waits %v while expecting %s %s", req.d, identity, result)
	case <-time.After(keeperWait):
		t.Fatalf("no result for %s", identity)
	}
	return keepaliveEvent{}
}

func (r *keeperRig) refreshes() int { return r.idp.Counts()["refresh_token"] }

func TestKeeperRefreshesIdleIdentities(t *testing.T) {
	r := newKeeperRig(t)
	seed(t, r.store, r.idp, alice, publicClient, "at-alice", time.Now().Add(time.Hour))
	seed(t, r.store, r.idp, bob, publicClient, "at-bob", time.Now().Add(time.Hour))
	const nobody = "nobody@contoso.onmicrosoft.com"
	r.run(t, r.keeper(2*time.Second, alice, bob, appIdentity, nobody))

	// First round: after half of min(24h/4, 5m). Two days later alice is
	// idle; bob was just used by a login.
	r.clock.Advance(48 * time.Hour)
	if _, err := r.m.Token(ctxT(t), bob); err != nil {
		t.Fatal(err)
	}
	before := mustGet(t, r.store, alice)
	r.fire(t, 150*time.Second)
	r.expect(t, alice, KeepaliveRefreshed)
	r.fire(t, 2*time.Second) // spacing after a refresh: 1s + half of 2s
	r.expect(t, bob, KeepaliveNotDue)
	r.expect(t, appIdentity, KeepaliveSkipped)
	r.expect(t, nobody, KeepaliveSkipped)
	if n := r.refreshes(); n != 2 {
		t.Fatalf("%d refresh requests after the first round, want 2 (bob's login, alice's keep-alive)", n)
	}
	if n := r.idp.Counts()["client_credentials"]; n != 0 {
		t.Errorf("%d client credentials requests; the keep-alive has nothing to do for apps", n)
	}
	after := mustGet(t, r.store, alice)
	if after.RefreshToken == before.RefreshToken || after.AccessToken == before.AccessToken || !after.LastRefresh.After(before.LoggedIn.Add(47*time.Hour)) {
		t.Errorf("alice's record was not renewed (last refresh %v)", after.LastRefresh)
	}

	// Next round after a quarter of the interval (±10%, here exactly):
	// nobody is idle yet, nothing is sent.
	r.fire(t, 6*time.Hour)
	r.expect(t, alice, KeepaliveNotDue)
	r.expect(t, bob, KeepaliveNotDue)
	r.expect(t, appIdentity, KeepaliveSkipped)
	r.expect(t, nobody, KeepaliveSkipped)
	if n := r.refreshes(); n != 2 {
		t.Fatalf("%d refresh requests, want still 2", n)
	}

	// A day later both are idle: one at a time, spaced. (The test IdP
	// mints the same token for the same user within one second; a new
	// lifetime keeps the new tokens apart from the old ones.)
	r.clock.Advance(25 * time.Hour)
	r.idp.SetAccessTokenLifetime(70 * time.Minute)
	r.fire(t, 6*time.Hour)
	r.expect(t, alice, KeepaliveRefreshed)
	r.fire(t, 2*time.Second)
	r.expect(t, bob, KeepaliveRefreshed)
	r.fire(t, 2*time.Second)
	r.expect(t, appIdentity, KeepaliveSkipped)
	r.expect(t, nobody, KeepaliveSkipped)
	if n := r.refreshes(); n != 4 {
		t.Fatalf("%d refresh requests, want 4", n)
	}
}

// TestKeeperFollowsInterval: interval 0 is off; turning it on (a reload)
// starts rounds, a shorter interval shortens the period.
func TestKeeperFollowsInterval(t *testing.T) {
	r := newKeeperRig(t)
	seed(t, r.store, r.idp, alice, publicClient, "at-alice", time.Now().Add(time.Hour))
	r.on.Store(0)
	r.run(t, r.keeper(-1, alice))
	r.fire(t, offRecheck)
	held := r.take(t, offRecheck) // still off: no round, no result
	r.on.Store(int64(time.Hour))
	r.clock.Advance(2 * time.Hour)
	held.fire <- time.Now()
	r.expect(t, alice, KeepaliveRefreshed)
	r.fire(t, 15*time.Minute) // a quarter of 1h
	r.expect(t, alice, KeepaliveNotDue)
	held = r.take(t, 15*time.Minute)
	r.on.Store(int64(30 * 24 * time.Hour))
	held.fire <- time.Now()
	r.expect(t, alice, KeepaliveNotDue)
	held = r.take(t, 6*time.Hour) // capped at maxRoundPeriod
	r.on.Store(0)
	held.fire <- time.Now()
	r.take(t, offRecheck)
	if n := r.refreshes(); n != 1 {
		t.Errorf("%d refresh requests, want 1", n)
	}
}

// TestKeepAliveForcesRefresh: an idle identity is refreshed even while its
// access token is still valid, and the new tokens are saved.
func TestKeepAliveForcesRefresh(t *testing.T) {
	r := newKeeperRig(t)
	seed(t, r.store, r.idp, alice, publicClient, "at-alice", time.Now().Add(time.Hour))
	r.clock.Advance(2 * time.Minute)
	res, err := r.m.KeepAlive(ctxT(t), alice, time.Minute)
	if res != KeepaliveRefreshed || err != nil {
		t.Fatalf("KeepAlive = %s, %v", res, err)
	}
	if rec := mustGet(t, r.store, alice); rec.AccessToken == "at-alice" || r.refreshes() != 1 {
		t.Errorf("access token %q after %d refreshes; want a new one after 1", rec.AccessToken, r.refreshes())
	}
	if res, err := r.m.KeepAlive(ctxT(t), alice, time.Minute); res != KeepaliveNotDue || err != nil {
		t.Errorf("right after: KeepAlive = %s, %v; want not due", res, err)
	}
}

// TestKeepAliveRevoked: a revoked user is a needs-login result, recorded
// by the refresh; the next round sends nothing and reports it again.
func TestKeepAliveRevoked(t *testing.T) {
	r := newKeeperRig(t)
	seed(t, r.store, r.idp, alice, publicClient, "at-alice", time.Now().Add(time.Hour))
	r.idp.RevokeUser(alice)
	r.clock.Advance(48 * time.Hour)
	res, err := r.m.KeepAlive(ctxT(t), alice, 24*time.Hour)
	if res != KeepaliveNeedsLogin {
		t.Fatalf("KeepAlive = %s, %v; want needs_login", res, err)
	}
	expectKind(t, err, ErrNeedsLogin, "AADSTS700082")
	var nl *NeedsLoginError
	if !errors.As(err, &nl) || nl.Identity != alice || !strings.Contains(nl.Fix, "xoauthd login "+alice) {
		t.Errorf("error %#v does not name the login command", err)
	}
	st, ok, err := r.m.Status(alice)
	if err != nil || !ok || st.State != StateNeedsLogin {
		t.Fatalf("status = %+v, %v, %v; want needs login", st, ok, err)
	}
	if rec := mustGet(t, r.store, alice); rec.RefreshToken == "" {
		t.Error("the refused refresh token was deleted; a failure must not destroy anything")
	}
	res, err = r.m.KeepAlive(ctxT(t), alice, 24*time.Hour)
	if res != KeepaliveSkipped || !errors.Is(err, ErrNeedsLogin) {
		t.Errorf("second KeepAlive = %s, %v; want skipped with the stored needs-login error", res, err)
	}
	if n := r.refreshes(); n != 1 {
		t.Errorf("%d refresh requests, want 1: a refused refresh token is not sent again", n)
	}
}

// TestKeepAliveProviderDown: a temporary failure keeps every token.
func TestKeepAliveProviderDown(t *testing.T) {
	for _, tc := range []struct {
		name    string
		failure testidp.Failure
		timeout time.Duration // the Keeper's wait
	}{
		{name: "503", failure: testidp.Failure{Status: http.StatusServiceUnavailable}},
		{name: "throttled", failure: testidp.Failure{Status: http.StatusTooManyRequests, RetryAfter: time.Minute}},
		{name: "hangs", failure: testidp.Failure{Hang: true}, timeout: 50 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newKeeperRig(t)
			seed(t, r.store, r.idp, alice, publicClient, "at-alice", time.Now().Add(time.Hour))
			r.idp.FailWith(tc.failure)
			r.clock.Advance(48 * time.Hour)
			before := mustGet(t, r.store, alice)
			k := r.keeper(-1, alice)
			if tc.timeout > 0 {
				k.opts.Timeout = tc.timeout
			}
			k.Round(ctxT(t), 24*time.Hour)
			ev := r.expect(t, alice, KeepaliveTemporary)
			if !IsTemporary(ev.err) && !errors.Is(ev.err, context.DeadlineExceeded) {
				t.Errorf("error %v is not temporary", ev.err)
			}
			after := mustGet(t, r.store, alice)
			if after.RefreshToken != before.RefreshToken || after.AccessToken != before.AccessToken ||
				!after.Expiry.Equal(before.Expiry) || !after.LastRefresh.Equal(before.LastRefresh) {
				t.Errorf("tokens changed by a temporary failure")
			}
			if after.LastError != nil && after.LastError.Class != classTemporary.String() {
				t.Errorf("recorded %+v, want a temporary error", after.LastError)
			}
			r.idp.ClearFailure()
		})
	}
}

// TestKeeperStops: Run returns when its context ends, also in a spacing
// pause or a round.
func TestKeeperStops(t *testing.T) {
	r := newKeeperRig(t)
	seed(t, r.store, r.idp, alice, publicClient, "at-alice", time.Now().Add(time.Hour))
	seed(t, r.store, r.idp, bob, publicClient, "at-bob", time.Now().Add(time.Hour))
	r.clock.Advance(48 * time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.keeper(time.Second, alice, bob).Run(ctx)
	}()
	r.fire(t, 150*time.Second)
	r.expect(t, alice, KeepaliveRefreshed)
	select {
	case <-r.asked: // the spacing pause: leave it pending
	case <-time.After(keeperWait):
		t.Fatal("no spacing pause")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(keeperWait):
		t.Fatal("Run did not return after its context ended")
	}
	if n := r.refreshes(); n != 1 {
		t.Errorf("%d refreshes, want 1 (bob's turn never came)", n)
	}
}

func TestPeriod(t *testing.T) {
	for _, tc := range []struct{ interval, want time.Duration }{
		{0, 0}, {time.Minute, 15 * time.Second}, {24 * time.Hour, 6 * time.Hour}, {720 * time.Hour, 6 * time.Hour},
	} {
		if got := period(tc.interval); got != tc.want {
			t.Errorf("period(%v) = %v, want %v", tc.interval, got, tc.want)
		}
	}
}
