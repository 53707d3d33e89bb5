package tokens

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/testidp"
)

const grantRefresh = "refresh_token"

// managerFixture is an IdP, a store with alice seeded, and a Manager.
type managerFixture struct {
	idp   *testidp.IdP
	store *Store
	key   []byte
	prov  *config.Provider
	m     *Manager
	clock *fakeClock
}

// newFixture seeds alice with an access token expiring at expiry.
func newFixture(t *testing.T, expiry time.Time, opts Options) *managerFixture {
	t.Helper()
	idp := newIdP(t, testidp.Options{})
	store, key := newStore(t)
	seed(t, store, idp, alice, publicClient, "cached-access-token", expiry)
	prov := msProvider(idp, publicClient, "", config.FlowAuthCode)
	clock := &fakeClock{}
	if opts.Now == nil {
		opts.Now = clock.Now
	}
	return &managerFixture{idp: idp, store: store, key: key, prov: prov, clock: clock,
		m: NewManager(store, providersFor(prov), opts)}
}

func TestTokenFromStoreWithoutRequest(t *testing.T) {
	f := newFixture(t, time.Now().Add(time.Hour), Options{})
	tok, err := f.m.Token(ctxT(t), alice)
	if err != nil || tok != "cached-access-token" {
		t.Fatalf("Token = %q, %v", tok, err)
	}
	if n := f.idp.Counts()[grantRefresh]; n != 0 {
		t.Errorf("%d refresh requests, want 0", n)
	}
}

// TestSingleFlight: 100 callers ask for an expired token at once; exactly
// one refresh request goes out and all get the same new token.
func TestSingleFlight(t *testing.T) {
	f := newFixture(t, time.Now().Add(-time.Minute), Options{})
	const callers = 100
	toks, errs := atOnce(callers, func(int) (string, error) { return f.m.Token(ctxT(t), alice) })
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if toks[i] != toks[0] || toks[i] == "cached-access-token" {
			t.Fatalf("caller %d got a different or the stale token", i)
		}
	}
	if n := f.idp.Counts()[grantRefresh]; n != 1 {
		t.Errorf("%d refresh requests, want exactly 1", n)
	}
}

// TestMarginTriggersRefresh: a token with less than the margin left is
// refreshed; with more left it is not.
func TestMarginTriggersRefresh(t *testing.T) {
	f := newFixture(t, time.Now().Add(5*time.Minute), Options{Margin: 10 * time.Minute})
	tok, err := f.m.Token(ctxT(t), alice)
	if err != nil || tok == "cached-access-token" {
		t.Fatalf("Token = %q, %v; want a refreshed token", tok, err)
	}
	g := newFixture(t, time.Now().Add(5*time.Minute), Options{Margin: time.Minute})
	if tok, _ := g.m.Token(ctxT(t), alice); tok != "cached-access-token" {
		t.Fatal("token with more than the margin left was refreshed")
	}
}

// TestRotationPersisted: the rotated refresh token is in the store after a
// refresh, and a new Store and Manager (a restart) use it.
func TestRotationPersisted(t *testing.T) {
	f := newFixture(t, time.Now().Add(-time.Minute), Options{})
	old := mustGet(t, f.store, alice)
	tok, err := f.m.Token(ctxT(t), alice)
	if err != nil {
		t.Fatal(err)
	}
	rec := mustGet(t, f.store, alice)
	if rec.RefreshToken == old.RefreshToken || rec.RefreshToken == "" {
		t.Fatal("the rotated refresh token was not stored")
	}
	if rec.AccessToken != tok || rec.LastRefresh.IsZero() || rec.LastError != nil {
		t.Fatalf("stored record %+v does not match the refresh", rec)
	}

	// Restart: new Store and Manager on the same file, token expired again.
	store2, err := OpenStore(f.store.Path(), f.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := store2.modify(alice, func(r *record, _ bool) (bool, error) { r.Expiry = time.Now().Add(-time.Minute); return true, nil }); err != nil {
		t.Fatal(err)
	}
	rt := &recordingTransport{}
	m2 := NewManager(store2, providersFor(f.prov), Options{HTTPClient: &http.Client{Transport: rt}})
	if _, err := m2.Token(ctxT(t), alice); err != nil {
		t.Fatal(err)
	}
	if got := rt.lastForm().Get("refresh_token"); got != rec.RefreshToken {
		t.Fatal("the restarted manager did not use the rotated refresh token")
	}
	if form := rt.lastForm(); form.Get("scope") == "" || form.Get("client_id") != publicClient || form.Has("client_secret") {
		t.Fatalf("refresh request form has scope %q, client_id %q, client_secret %v", form.Get("scope"), form.Get("client_id"), form.Has("client_secret"))
	}
}

// TestKeepsRefreshTokenWhenNoneReturned uses a provider that does not rotate.
func TestKeepsRefreshTokenWhenNoneReturned(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": "new-at", "token_type": "Bearer", "expires_in": 3600})
	}))
	defer srv.Close()
	store, _ := newStore(t)
	put(t, store, record{Identity: alice, RefreshToken: "keep-me", AccessToken: "old", Expiry: time.Now().Add(-time.Hour)})
	prov := &config.Provider{Name: "c", Type: "custom", ClientID: "x", TokenURL: srv.URL}
	m := NewManager(store, providersFor(prov), Options{})
	if tok, err := m.Token(ctxT(t), alice); err != nil || tok != "new-at" {
		t.Fatalf("Token = %q, %v", tok, err)
	}
	if rec := mustGet(t, store, alice); rec.RefreshToken != "keep-me" || rec.AccessToken != "new-at" {
		t.Fatalf("stored refresh token %q, access token %q", rec.RefreshToken, rec.AccessToken)
	}
}

// TestRevokedNeedsLogin: a revoked refresh token gives ErrNeedsLogin with
// AADSTS700082 and the login command; the refresh token is not asked for
// again, stays stored, and the state shows in Status.
func TestRevokedNeedsLogin(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(*testidp.IdP)
		code   string
	}{
		{"revoked", func(p *testidp.IdP) { p.RevokeUser(alice) }, "AADSTS700082"},
		{"mfa now required", func(p *testidp.IdP) { p.RequireMFA(alice) }, "AADSTS50076"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, time.Now().Add(-time.Minute), Options{})
			before := mustGet(t, f.store, alice)
			tc.break_(f.idp)
			_, err := f.m.Token(ctxT(t), alice)
			expectKind(t, err, ErrNeedsLogin, tc.code)
			var nl *NeedsLoginError
			if !errors.As(err, &nl) || nl.Code != tc.code || nl.Identity != alice {
				t.Fatalf("error %#v", err)
			}
			if !strings.Contains(err.Error(), `run "xoauthd login `+alice+`"`) {
				t.Errorf("error %q does not name the fix", err)
			}
			_, err = f.m.Token(ctxT(t), alice)
			expectKind(t, err, ErrNeedsLogin, tc.code)
			if n := f.idp.Counts()[grantRefresh]; n != 1 {
				t.Errorf("%d refresh requests, want 1 (a dead token is not retried)", n)
			}
			after := mustGet(t, f.store, alice)
			if after.RefreshToken != before.RefreshToken {
				t.Error("the refresh token was changed")
			}
			st, _, _ := f.store.Status(alice, time.Now())
			if st.State != StateNeedsLogin || !strings.Contains(st.LastError, tc.code) {
				t.Errorf("status %+v", st)
			}
			// A new login (here: a new record) ends the needs-login state.
			seed(t, f.store, f.idp, alice, publicClient, "", time.Time{})
			if _, err := f.m.Token(ctxT(t), alice); err != nil {
				t.Fatalf("after a new login: %v", err)
			}
		})
	}
}

// TestOutage: IdP failures are temporary, leave the stored token intact,
// and a cached token that is still valid keeps being handed out.
func TestOutage(t *testing.T) {
	tests := []struct {
		name    string
		failure testidp.Failure
	}{
		{"500", testidp.Failure{Status: 500}},
		{"503", testidp.Failure{Status: 503}},
		{"429 with Retry-After", testidp.Failure{Status: 429, RetryAfter: 30 * time.Second}},
		{"hang", testidp.Failure{Hang: true}},
		{"malformed JSON", testidp.Failure{MalformedJSON: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := Options{RequestTimeout: 300 * time.Millisecond}
			// Expired token: the caller gets a temporary error.
			f := newFixture(t, time.Now().Add(-time.Minute), opts)
			before := mustGet(t, f.store, alice)
			f.idp.FailWith(tc.failure)
			_, err := f.m.Token(ctxT(t), alice)
			expectKind(t, err, ErrTemporary, "")
			after := mustGet(t, f.store, alice)
			if after.RefreshToken != before.RefreshToken || after.AccessToken != before.AccessToken {
				t.Fatal("stored tokens changed during the outage")
			}
			if after.LastError == nil || after.LastError.Class != classTemporary.String() {
				t.Errorf("last error %+v, want a temporary one", after.LastError)
			}

			// Token within the margin but valid: handed out, no error.
			g := newFixture(t, time.Now().Add(5*time.Minute), opts)
			g.idp.FailWith(tc.failure)
			tok, err := g.m.Token(ctxT(t), alice)
			if err != nil || tok != "cached-access-token" {
				t.Fatalf("during the outage Token = %q, %v; want the cached token", tok, err)
			}
			// But not when the upstream just rejected it.
			_, err = g.m.Refresh(ctxT(t), alice, "cached-access-token")
			expectKind(t, err, ErrTemporary, "")
		})
	}
}

// TestBackoff: after a 429 no request goes out before Retry-After; after
// it the refresh works again.
func TestBackoff(t *testing.T) {
	f := newFixture(t, time.Now().Add(-time.Minute), Options{})
	f.idp.FailWith(testidp.Failure{Status: 429, RetryAfter: 60 * time.Second})
	_, err := f.m.Token(ctxT(t), alice)
	expectKind(t, err, ErrTemporary, "")
	f.idp.ClearFailure()
	for range 5 {
		_, err = f.m.Token(ctxT(t), alice)
		var te *TemporaryError
		if !errors.As(err, &te) || te.RetryAt.Sub(f.clock.Now()) < 50*time.Second {
			t.Fatalf("during back-off: %v, want a temporary error with about 60 s to wait", err)
		}
	}
	if n := f.idp.Counts()[grantRefresh]; n != 1 {
		t.Fatalf("%d refresh requests during the back-off, want 1", n)
	}
	f.clock.Advance(61 * time.Second)
	if _, err := f.m.Token(ctxT(t), alice); err != nil {
		t.Fatalf("after the back-off: %v", err)
	}
	if rec := mustGet(t, f.store, alice); rec.LastError != nil {
		t.Errorf("last error not cleared: %+v", rec.LastError)
	}
}

// TestBackoffDoubles: repeated 500s back off longer each time, up to the max.
func TestBackoffDoubles(t *testing.T) {
	f := newFixture(t, time.Now().Add(-time.Minute), Options{BackoffMin: time.Second, BackoffMax: 4 * time.Second})
	f.idp.FailWith(testidp.Failure{Status: 500})
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		_, err := f.m.Token(ctxT(t), alice)
		expectKind(t, err, ErrTemporary, "")
		_, err = f.m.Token(ctxT(t), alice)
		var te *TemporaryError
		if !errors.As(err, &te) {
			t.Fatalf("round %d: %v", i, err)
		}
		if got := te.RetryAt.Sub(f.clock.Now()); got > want || got < want-time.Second/2 {
			t.Errorf("round %d: back-off %v, want %v", i, got, want)
		}
		f.clock.Advance(want)
	}
	if n := f.idp.Counts()[grantRefresh]; n != 4 {
		t.Errorf("%d refresh requests, want 4", n)
	}
}

// TestRefreshStale: Refresh returns a newer token without asking when there
// is one, and forces a refresh when the stored token is the rejected one.
func TestRefreshStale(t *testing.T) {
	f := newFixture(t, time.Now().Add(time.Hour), Options{})
	tok, err := f.m.Refresh(ctxT(t), alice, "some-older-token")
	if err != nil || tok != "cached-access-token" {
		t.Fatalf("Refresh(older) = %q, %v", tok, err)
	}
	if n := f.idp.Counts()[grantRefresh]; n != 0 {
		t.Fatalf("%d refresh requests, want 0", n)
	}
	tok, err = f.m.Refresh(ctxT(t), alice, "cached-access-token")
	if err != nil || tok == "cached-access-token" {
		t.Fatalf("Refresh(current) = %q, %v; want a new token", tok, err)
	}
	if n := f.idp.Counts()[grantRefresh]; n != 1 {
		t.Fatalf("%d refresh requests, want 1", n)
	}
	if _, err := f.m.Refresh(ctxT(t), alice, ""); err == nil {
		t.Error("Refresh without a stale token succeeded")
	}
}

// TestRefreshOutlivesCaller: a caller that gives up does not cancel the
// refresh others wait for; it completes and is persisted.
func TestRefreshOutlivesCaller(t *testing.T) {
	rt := &recordingTransport{hold: make(chan struct{})}
	f := newFixture(t, time.Now().Add(-time.Minute), Options{HTTPClient: &http.Client{Transport: rt}})
	ctx, cancel := context.WithCancel(context.Background())
	impatient := make(chan error, 1)
	go func() {
		_, err := f.m.Token(ctx, alice)
		impatient <- err
	}()
	patient := make(chan string, 1)
	go func() {
		tok, err := f.m.Token(ctxT(t), alice)
		if err != nil {
			t.Error(err)
		}
		patient <- tok
	}()
	waitFor(t, func() bool { return rt.lastForm() != nil })
	cancel()
	if err := <-impatient; !errors.Is(err, context.Canceled) {
		t.Fatalf("impatient caller: %v", err)
	}
	close(rt.hold)
	tok := <-patient
	if rec := mustGet(t, f.store, alice); rec.AccessToken != tok {
		t.Fatal("the refresh was not persisted")
	}
	if n := f.idp.Counts()[grantRefresh]; n != 1 {
		t.Errorf("%d refresh requests, want 1", n)
	}
}

// waitFor polls cond until it holds or the test's deadline is near.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestManagerSeesLoginFromOtherProcess: a new token written by another
// Store (a login in another process) is used without a restart.
func TestManagerSeesLoginFromOtherProcess(t *testing.T) {
	f := newFixture(t, time.Now().Add(time.Hour), Options{})
	other, err := OpenStore(f.store.Path(), f.key)
	if err != nil {
		t.Fatal(err)
	}
	put(t, other, record{Identity: alice, RefreshToken: "rt", AccessToken: "from-the-other-process", Expiry: time.Now().Add(time.Hour)})
	if tok, _ := f.m.Token(ctxT(t), alice); tok != "from-the-other-process" {
		t.Fatalf("Token = %q; the other process's login was not picked up", tok)
	}
}

func TestNotLoggedIn(t *testing.T) {
	f := newFixture(t, time.Now().Add(time.Hour), Options{})
	_, err := f.m.Token(ctxT(t), bob)
	expectKind(t, err, ErrNeedsLogin, "")
	if !strings.Contains(err.Error(), `run "xoauthd login `+bob+`"`) {
		t.Errorf("error %q", err)
	}
	bad := NewManager(f.store, func(string) (*config.Provider, error) { return nil, errors.New("no account") }, Options{})
	if _, err := bad.Token(ctxT(t), alice); err == nil || !strings.Contains(err.Error(), "no account") {
		t.Errorf("provider lookup failure: %v", err)
	}
}

func TestClientCredentials(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	store, _ := newStore(t)
	prov := msProvider(idp, confClient, confSecret, config.FlowClientCredentials)
	rt := &recordingTransport{}
	m := NewManager(store, providersFor(prov), Options{HTTPClient: &http.Client{Transport: rt}})
	tok, err := m.Token(ctxT(t), "shared@contoso.onmicrosoft.com")
	if err != nil || tok == "" {
		t.Fatalf("Token = %q, %v", tok, err)
	}
	form := rt.lastForm()
	if form.Get("client_secret") != confSecret || form.Get("scope") != "https://outlook.office365.com/.default" {
		t.Errorf("request form scope %q, secret sent %v", form.Get("scope"), form.Has("client_secret"))
	}
	// Another mailbox of the same app shares the cached token.
	tok2, err := m.Token(ctxT(t), "other@contoso.onmicrosoft.com")
	if err != nil || tok2 != tok {
		t.Fatalf("second mailbox: %q, %v; want the cached token", tok2, err)
	}
	if n := idp.Counts()["client_credentials"]; n != 1 {
		t.Fatalf("%d client_credentials requests, want 1", n)
	}
	// The test IdP's app tokens carry no unique claim, so a token issued in
	// the same second is the same string: count the requests instead.
	if _, err := m.Refresh(ctxT(t), "shared@contoso.onmicrosoft.com", tok); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if n := idp.Counts()["client_credentials"]; n < 2 {
		t.Fatalf("%d client_credentials requests after Refresh, want a new one", n)
	}
	if all, _ := store.all(); len(all) != 0 {
		t.Errorf("client credentials wrote %d store records", len(all))
	}
}

func TestClientCredentialsErrors(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	store, _ := newStore(t)
	tests := []struct {
		name     string
		prov     *config.Provider
		sentinel error
		code     string
	}{
		{"wrong secret", msProvider(idp, confClient, "the-secret-id", config.FlowClientCredentials), ErrConfiguration, "AADSTS7000215"},
		{"no secret", msProvider(idp, confClient, "", config.FlowClientCredentials), ErrConfiguration, "AADSTS7000218"},
		{"common tenant", func() *config.Provider {
			p := msProvider(idp, confClient, confSecret, config.FlowClientCredentials)
			p.Tenant = "common"
			return p
		}(), ErrConfiguration, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewManager(store, providersFor(tc.prov), Options{})
			_, err := m.Token(ctxT(t), "shared@contoso.onmicrosoft.com")
			expectKind(t, err, tc.sentinel, tc.code)
			if strings.Contains(err.Error(), "the-secret-id") || strings.Contains(err.Error(), confSecret) {
				t.Errorf("error %q reveals the secret", err)
			}
		})
	}
}

// BenchmarkTokenCached measures the path every upstream login takes.
func BenchmarkTokenCached(b *testing.B) {
	idp := newIdP(b, testidp.Options{})
	store, _ := newStore(b)
	seed(b, store, idp, alice, publicClient, "cached", time.Now().Add(time.Hour))
	m := NewManager(store, providersFor(msProvider(idp, publicClient, "", config.FlowAuthCode)), Options{})
	ctx := context.Background()
	for b.Loop() {
		if _, err := m.Token(ctx, alice); err != nil {
			b.Fatal(err)
		}
	}
}

// TestProviderChanged: a token stored for another provider is not sent to
// this one's token endpoint.
func TestProviderChanged(t *testing.T) {
	f := newFixture(t, time.Now().Add(-time.Minute), Options{})
	other := *f.prov
	other.Name = "other"
	m := NewManager(f.store, providersFor(&other), Options{})
	_, err := m.Token(ctxT(t), alice)
	expectKind(t, err, ErrNeedsLogin, "")
	if !strings.Contains(err.Error(), "--provider other") {
		t.Errorf("error %q", err)
	}
	if n := f.idp.Counts()[grantRefresh]; n != 0 {
		t.Errorf("%d refresh requests, want 0", n)
	}
}

// TestOnRefreshReportsEachRequest: the hook sees a success with the new
// expiry, then a needs-login after the user's grant is revoked.
func TestOnRefreshReportsEachRequest(t *testing.T) {
	type call struct {
		identity, result string
		expiry           time.Time
	}
	var mu sync.Mutex
	var calls []call
	f := newFixture(t, time.Now().Add(-time.Minute), Options{OnRefresh: func(id, result string, exp time.Time) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, call{id, result, exp})
	}})
	tok, err := f.m.Token(ctxT(t), alice)
	if err != nil {
		t.Fatal(err)
	}
	f.idp.RevokeUser(alice)
	if _, err := f.m.Refresh(ctxT(t), alice, tok); !errors.Is(err, ErrNeedsLogin) {
		t.Fatalf("Refresh after revocation = %v, want ErrNeedsLogin", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 2 {
		t.Fatalf("OnRefresh called %d times (%+v), want 2", len(calls), calls)
	}
	if c := calls[0]; c.identity != alice || c.result != RefreshSuccess || !c.expiry.After(time.Now()) {
		t.Errorf("first call %+v, want success with a future expiry", c)
	}
	if c := calls[1]; c.identity != alice || c.result != RefreshNeedsLogin || !c.expiry.IsZero() {
		t.Errorf("second call %+v, want needs_login without expiry", c)
	}
}
