package tokens

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/testidp"
)

// Test fixtures.
const (
	publicClient = "11111111-1111-1111-1111-111111111111"
	confClient   = "22222222-2222-2222-2222-222222222222"
	confSecret   = "conf-secret-value"
	alice        = "alice@contoso.onmicrosoft.com"
	bob          = "bob@contoso.onmicrosoft.com"
)

// newIdP starts a test identity provider with a public and a confidential
// client and the users alice and bob.
func newIdP(t testing.TB, opts testidp.Options) *testidp.IdP {
	t.Helper()
	idp := testidp.New(t, opts)
	idp.AddClient(testidp.Client{ID: publicClient, Public: true})
	idp.AddClient(testidp.Client{ID: confClient, Secret: confSecret})
	idp.AddUser(alice)
	idp.AddUser(bob)
	return idp
}

// msProvider is a microsoft provider pointing at idp.
func msProvider(idp *testidp.IdP, clientID, secret, flow string) *config.Provider {
	return &config.Provider{
		Name: "m365", Type: "microsoft", Tenant: idp.Tenant(), ClientID: clientID,
		ClientSecret: config.Secret(secret), Flow: flow, Authority: idp.Authority(),
	}
}

// newKey returns a random store key.
func newKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, KeySize)
	rand.Read(k)
	return k
}

// newStore opens a fresh store in a temporary directory.
func newStore(t testing.TB) (*Store, []byte) {
	t.Helper()
	key := newKey(t)
	s, err := OpenStore(filepath.Join(t.TempDir(), "tokens.json"), key)
	if err != nil {
		t.Fatal(err)
	}
	return s, key
}

// seed stores a record for identity with a refresh token issued by idp.
func seed(t testing.TB, s Backend, idp *testidp.IdP, identity, clientID string, at string, expiry time.Time) record {
	t.Helper()
	rec := record{
		Identity: identity, Provider: "m365", Flow: config.FlowAuthCode, User: identity,
		RefreshToken: idp.RefreshTokenFor(identity, clientID),
		AccessToken:  at, Expiry: expiry, LoggedIn: time.Now(),
	}
	if err := s.modify(identity, func(r *record, _ bool) (bool, error) { *r = rec; return true, nil }); err != nil {
		t.Fatal(err)
	}
	return rec
}

// mustGet returns identity's record or fails.
func mustGet(t testing.TB, s Backend, identity string) record {
	t.Helper()
	r, ok, err := s.get(identity)
	if err != nil || !ok {
		t.Fatalf("store has no record for %s (err %v)", identity, err)
	}
	return r
}

// providersFor returns a providers function that gives p for every identity.
func providersFor(p *config.Provider) func(string) (*config.Provider, error) {
	return func(string) (*config.Provider, error) { return p, nil }
}

// fakeBrowser plays the browser: it lets idp sign in for the authorize URL
// and follows the redirect to the loopback listener. edit may change the
// authorize URL before and the redirect URL after the sign-in.
func fakeBrowser(t testing.TB, idp *testidp.IdP, editAuth, editRedirect func(string) string) func(string) error {
	return func(authURL string) error {
		if editAuth != nil {
			authURL = editAuth(authURL)
		}
		redirect, err := idp.Authorize(authURL)
		if err != nil {
			t.Errorf("authorize: %v", err)
			return err
		}
		if editRedirect != nil {
			redirect = editRedirect(redirect)
		}
		resp, err := http.Get(redirect)
		if err != nil {
			t.Errorf("following the redirect: %v", err)
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return nil
	}
}

// setQuery returns u with query parameter k set to v.
func setQuery(t testing.TB, u, k, v string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := p.Query()
	q.Set(k, v)
	p.RawQuery = q.Encode()
	return p.String()
}

// syncBuffer is a bytes.Buffer safe for concurrent writers that also
// delivers every complete line to lines (when not nil).
type syncBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	part  string
	lines chan string
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{lines: make(chan string, 100)} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	b.part += string(p)
	for {
		i := strings.IndexByte(b.part, '\n')
		if i < 0 {
			break
		}
		select {
		case b.lines <- b.part[:i]:
		default:
		}
		b.part = b.part[i+1:]
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitLine returns the first line containing substr, or fails after d.
func (b *syncBuffer) waitLine(t testing.TB, substr string, d time.Duration) string {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case l := <-b.lines:
			if strings.Contains(l, substr) {
				return l
			}
		case <-timeout:
			t.Fatalf("no output line containing %q within %v; output:\n%s", substr, d, b.String())
		}
	}
}

// recordingTransport records the form of every request and can hold
// requests until released.
type recordingTransport struct {
	mu    sync.Mutex
	forms []url.Values
	hold  chan struct{} // when not nil, requests wait until it is closed
}

func (rt *recordingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		form, _ := url.ParseQuery(string(b))
		rt.mu.Lock()
		rt.forms = append(rt.forms, form)
		hold := rt.hold
		rt.mu.Unlock()
		if hold != nil {
			select {
			case <-hold:
			case <-r.Context().Done():
				return nil, r.Context().Err()
			}
		}
		r = r.Clone(r.Context())
		r.Body = io.NopCloser(bytes.NewReader(b))
		r.ContentLength = int64(len(b))
	}
	return http.DefaultTransport.RoundTrip(r)
}

func (rt *recordingTransport) lastForm() url.Values {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if len(rt.forms) == 0 {
		return nil
	}
	return rt.forms[len(rt.forms)-1]
}

// fakeClock is a settable clock for back-off tests.
type fakeClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// expectKind checks that err matches sentinel and, when code is set, carries it.
func expectKind(t testing.TB, err, sentinel error, code string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("error %v (%T) does not match %v", err, err, sentinel)
	}
	if code != "" && !strings.Contains(err.Error(), code) {
		t.Fatalf("error %q does not name %s", err, code)
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// atOnce makes n calls as nearly at once as goroutines allow and returns
// their results by call.
func atOnce(n int, call func(i int) (string, error)) ([]string, []error) {
	toks, errs := make([]string, n), make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			toks[i], errs[i] = call(i)
		})
	}
	close(start)
	wg.Wait()
	return toks, errs
}
