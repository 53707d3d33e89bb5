package console

import (
	"context"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/check"
	"github.com/xoauthd/xoauthd/proxy"
	"github.com/xoauthd/xoauthd/tokens"
)

// Bounds of the console's state, all kept in memory.
const (
	// maxFormBytes bounds a posted form.
	maxFormBytes = 16 << 10
	// idpTimeout bounds one request to the identity provider made while
	// the admin's browser waits (starting a device sign-in, redeeming a code).
	idpTimeout = 30 * time.Second
	// testTimeout bounds one test run (every step has its own bound too).
	testTimeout = 10 * time.Minute
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options are the console's dependencies.
type Options struct {
	// Config returns the configuration in force; the console reads it at
	// every request, so it follows reloads (and admin.password_hash with it).
	Config func() *config.Config
	// Store is the token store; nil when the daemon has none (a test that
	// replaced the token manager): Connect and Sign out are then refused.
	Store tokens.Backend
	// Tokens gets and refreshes access tokens for Test (the daemon's live
	// manager); nil: a manager over Store per provider.
	Tokens check.Tokens
	// Events holds the recent failed mail logins per account; nil: none
	// are shown.
	Events *Events
	// Log receives sign-ins, sign-outs, Connect and Test; nil: slog.Default().
	Log *slog.Logger
	// HTTPClient makes the requests to the identity provider; nil:
	// http.DefaultClient.
	HTTPClient *http.Client
	// Credentials tunes the throttling of failed sign-ins (the defaults of
	// local mail logins when zero; tests shorten them).
	Credentials proxy.CredentialOptions
	// Dialer, when set, replaces proxy.NewDialer for Test's upstreams.
	Dialer func(addr string, mode proxy.TLSMode, caFile string) (*proxy.Dialer, error)
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// Console serves the console's pages. Close stops what it runs in the
// background (device sign-ins, test runs).
type Console struct {
	opts     Options
	log      *slog.Logger
	pages    map[string]*template.Template
	auth     *auth
	ctx      context.Context // ends with Close; background work uses it
	cancel   context.CancelFunc
	wg       sync.WaitGroup           // background goroutines
	mu       sync.Mutex               // guards the maps below and what they hold
	sessions map[string]*session      // by session id
	pending  map[string]*pendingLogin // authorization code logins by state
	devices  map[string]*deviceLogin  // device sign-ins by id
	runs     map[string]*testRun      // test runs by id
}

// New returns a Console over opts.
func New(opts Options) *Console {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Console{
		opts: opts, log: opts.Log.With("component", "console"), pages: parsePages(),
		ctx: ctx, cancel: cancel,
		sessions: map[string]*session{}, pending: map[string]*pendingLogin{},
		devices: map[string]*deviceLogin{}, runs: map[string]*testRun{},
	}
	c.auth = newAuth(opts.Config, opts.Credentials, c.log)
	return c
}

// Close ends the background work (device sign-ins being polled, tests
// running) and waits for it.
func (c *Console) Close() {
	c.cancel()
	c.wg.Wait()
}

// Handler returns the console's routes. They answer every path that the
// admin endpoint does not (/healthz, /readyz and /metrics stay open).
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", c.home)
	mux.HandleFunc("GET /signin", c.signInPage)
	mux.HandleFunc("POST /signin", c.signIn)
	mux.Handle("POST /signout", c.signedIn(c.signOut))
	mux.Handle("GET /account/{login}", c.signedIn(c.accountPage))
	mux.Handle("POST /identity/connect", c.signedIn(c.connect))
	mux.Handle("POST /identity/device", c.signedIn(c.deviceStart))
	mux.Handle("GET /device/{id}", c.signedIn(c.devicePage))
	mux.Handle("GET /identity/signout", c.signedIn(c.identitySignOutPage))
	mux.Handle("POST /identity/signout", c.signedIn(c.identitySignOut))
	mux.Handle("POST /test", c.signedIn(c.testStart))
	mux.Handle("GET /test/{id}", c.signedIn(c.testPage))
	mux.Handle("GET /test/{id}/report.json", c.signedIn(c.testJSON))
	return c.guard(mux)
}

// guard turns the console off while admin.password_hash is empty (it says
// how to turn it on) and sets the headers every answer carries.
func (c *Console) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		// No form-action: Connect's form is answered with a redirect to the
		// identity provider, which form-action would block.
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'")
		if c.opts.Config().Admin.PasswordHash == "" {
			h.Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(consoleOff))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// consoleOff is the answer at / while the console is off.
const consoleOff = `The xoauthd console is off.

To turn it on, choose a password, run "xoauthd hash-password" and put its
output into the configuration:

  admin:
    listen: 127.0.0.1:9925
    password_hash: $argon2id$...

xoauthd picks the change up without a restart. /healthz, /readyz and
/metrics are served either way.
`

// evictOldest removes the entries of m whose time is oldest until fewer
// than max remain, making room for one more.
func evictOldest[V any](m map[string]V, max int, at func(V) time.Time) {
	for len(m) >= max {
		var oldest string
		for k, v := range m {
			if oldest == "" || at(v).Before(at(m[oldest])) {
				oldest = k
			}
		}
		delete(m, oldest)
	}
}
