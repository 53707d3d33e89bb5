package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/admin"
	"github.com/xoauthd/xoauthd/internal/check"
	"github.com/xoauthd/xoauthd/internal/console"
	"github.com/xoauthd/xoauthd/internal/metrics"
	"github.com/xoauthd/xoauthd/tokens"
)

// adminStopTimeout bounds stopping the admin endpoint when the caller's
// context has no time left (a failed Start).
const adminStopTimeout = 5 * time.Second

// ops is what the daemon offers operators: the metrics, the admin endpoint
// (/healthz, /readyz, /metrics) and the protocol trace. Its fields are set
// by initOps and startAdmin.
type ops struct {
	metrics *metrics.Metrics
	store   tokens.Backend // nil when Options.Tokens replaced the token manager
	trace   bool           // log.trace (or serve --trace), read at New
	admin   *admin.Server  // nil when admin.listen is empty or before Start
	// console is the browser console at / of the admin endpoint (off until
	// admin.password_hash is set); events feeds it the failed logins.
	console *console.Console
	events  *console.Events
	// storeSeen is set once the store file was found: from then on a
	// missing file means it disappeared (a lost volume), which /readyz
	// reports, rather than a first run before any login.
	storeSeen atomic.Bool
}

// initOps sets up the metrics (counting every reload too) and the trace
// switch. New calls it before anything that reports to the metrics.
func (d *Daemon) initOps(cfg *config.Config) {
	d.ops.trace = cfg.Log.Trace
	d.ops.events = console.NewEvents(func(login string) bool { return d.snap.Load().byLogin[strings.ToLower(login)] != nil })
	d.log = slog.New(d.ops.events.Handler(d.log.Handler()))
	d.ops.metrics = metrics.New(config.ProtoIMAP, config.ProtoPOP3, config.ProtoSMTP)
	d.ops.metrics.SetIdentities(d.identityMetrics)
	next := d.onReload
	d.onReload = func(result string) {
		d.ops.metrics.ConfigReloaded(result)
		if next != nil {
			next(result)
		}
	}
}

// setStore records the token store for the readiness check and the token
// metrics.
func (d *Daemon) setStore(store tokens.Backend) {
	d.ops.store = store
	if fs, ok := store.(*tokens.Store); ok {
		if _, err := os.Stat(fs.Path()); err == nil {
			d.ops.storeSeen.Store(true)
		}
	}
}

// closeStore closes the token store (a Redis backend's connections) at
// the end of Shutdown.
func (d *Daemon) closeStore() error {
	if d.ops.store == nil {
		return nil
	}
	return d.ops.store.Close()
}

// Metrics returns the daemon's metrics (their registry serves /metrics).
func (d *Daemon) Metrics() *metrics.Metrics { return d.ops.metrics }

// AdminAddr returns the admin endpoint's bound address ("" when it is off
// or not started), useful when admin.listen asked for port 0.
func (d *Daemon) AdminAddr() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ops.admin == nil {
		return ""
	}
	return d.ops.admin.Addr()
}

// instrument gives a new listener's server the metrics and the trace, and
// watches its socket so that /readyz knows when it stops accepting.
func (d *Daemon) instrument(l *listener) *listener {
	l.srv.Metrics = d.ops.metrics
	l.srv.Trace = d.ops.trace
	l.ln = &watchedListener{Listener: l.ln}
	return l
}

// watchedListener records that its listener was closed: by Shutdown, by a
// reload that retired it, or by its accept loop after a fatal error.
type watchedListener struct {
	net.Listener
	closed atomic.Bool
}

// Close implements net.Listener.
func (w *watchedListener) Close() error {
	w.closed.Store(true)
	return w.Listener.Close()
}

// startAdmin starts the admin endpoint when admin.listen is set.
func (d *Daemon) startAdmin(ctx context.Context) error {
	listen := d.Config().Admin.Listen
	if listen == "" {
		return nil
	}
	cons := console.New(console.Options{Config: d.Config, Store: d.ops.store, Tokens: d.consoleTokens(),
		Events: d.ops.events, Log: d.log})
	srv := admin.New(admin.Options{
		Listen:  listen,
		Log:     d.log,
		Metrics: d.ops.metrics.Handler(d.log),
		Ready:   d.readiness,
		Console: cons.Handler(),
	})
	if err := srv.Start(ctx); err != nil {
		return err
	}
	d.mu.Lock()
	d.ops.admin, d.ops.console = srv, cons
	d.mu.Unlock()
	if d.Config().Admin.PasswordHash != "" {
		_, port, _ := net.SplitHostPort(srv.Addr())
		d.log.Info("console on: open it as http://localhost:"+port+"/ (Connect needs that name)", "addr", srv.Addr())
	}
	return nil
}

// consoleTokens is the token manager the console's Test uses: the daemon's
// own, so a test sees the tokens the listeners use; nil when Options.Tokens
// replaced it.
func (d *Daemon) consoleTokens() check.Tokens {
	if d.manager == nil {
		return nil
	}
	return d.manager
}

// stopAdmin stops the admin endpoint, if it runs. It is called last in
// Shutdown, so that /readyz says "shutting down" while sessions drain.
func (d *Daemon) stopAdmin(ctx context.Context) error {
	d.mu.Lock()
	srv, cons := d.ops.admin, d.ops.console
	d.ops.admin = nil
	d.mu.Unlock()
	if srv == nil {
		return nil
	}
	defer cons.Close()
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), adminStopTimeout)
		defer cancel()
	}
	return srv.Shutdown(ctx)
}

// readiness is /readyz. The process is not ready when it is not serving
// (before Start, during Shutdown), when a listener stopped accepting, or
// when the token store cannot be read (a wrong key, a damaged file, a file
// that disappeared, no permission): then no login can work. An identity
// that needs a new login is a note only: the other identities are served,
// and an unready pod would take its application (a sidecar's neighbour)
// out of service with it; the identity_needs_login metric and the log say
// it loudly instead.
func (d *Daemon) readiness(ctx context.Context) admin.Readiness {
	var r admin.Readiness
	d.mu.Lock()
	started, stopped := d.runCtx != nil, d.stopped
	ls := slices.Clone(d.listeners)
	d.mu.Unlock()
	switch {
	case stopped:
		r.Problems = append(r.Problems, "shutting down: no new connections are accepted")
	case !started:
		r.Problems = append(r.Problems, "starting: the listeners are not open yet")
	}
	for _, l := range ls {
		if w, ok := l.ln.(*watchedListener); ok && w.closed.Load() && !stopped {
			r.Problems = append(r.Problems, fmt.Sprintf("the %s listener on %s is not accepting connections (see the log for why)", l.conf.Protocol, l.conf.Listen))
		}
	}
	if d.snap.Load() == nil {
		r.Problems = append(r.Problems, "no configuration is loaded")
	}
	if d.ops.store == nil {
		return r
	}
	states, err := d.storeStates(time.Now())
	if err != nil && tokens.IsTemporary(err) {
		// A shared store that cannot be reached: the sessions with a cached
		// token still work, so the replica stays in service.
		r.Notes = append(r.Notes, err.Error()+"; logins with a cached access token still work, those that need a refresh fail until it is back")
		return r
	}
	if err != nil {
		r.Problems = append(r.Problems, err.Error())
		return r
	}
	for _, st := range d.identityStates(states) {
		if note := st.note(); note != "" {
			r.Notes = append(r.Notes, note)
		}
	}
	return r
}

// storeStates reads the token store: it opens the file (so that a file the
// daemon may no longer read shows now, not at the next login) and lists its
// identities, which decrypts the file when it changed. A file that is
// missing is an empty store on a first run, and an error once the file was
// seen.
func (d *Daemon) storeStates(now time.Time) ([]tokens.Status, error) {
	fileStore, ok := d.ops.store.(*tokens.Store)
	if !ok {
		states, err := d.ops.store.List(now)
		if err != nil {
			return nil, fmt.Errorf("reading the token store: %w", err)
		}
		return states, nil
	}
	path := fileStore.Path()
	f, err := os.Open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if d.ops.storeSeen.Load() {
			return nil, fmt.Errorf("token store %s has disappeared: every identity lost its tokens (hint: check the volume or directory it is on, restore it from a backup, or log the identities in again)", path)
		}
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("token store %s cannot be read: %w (hint: it must be readable by the user xoauthd runs as)", path, err)
	}
	_ = f.Close()
	d.ops.storeSeen.Store(true)
	states, err := d.ops.store.List(now)
	if err != nil {
		return nil, fmt.Errorf("reading the token store: %w", err)
	}
	return states, nil
}

// identityState is one configured identity's token state.
type identityState struct {
	identity   string
	flow       string        // the provider's flow
	status     tokens.Status // zero State when nothing is stored
	needsLogin bool
}

// note is the /readyz line of an identity that needs a person, or "".
func (s identityState) note() string {
	if !s.needsLogin {
		return ""
	}
	cause := "is not logged in"
	if s.status.State == tokens.StateNeedsLogin {
		cause = "needs a new login"
		if s.status.LastError != "" {
			cause += " (" + s.status.LastError + ")"
		}
	}
	return fmt.Sprintf("identity %s %s: run xoauthd login %s", s.identity, cause, s.identity)
}

// identityStates returns the state of every identity of the configuration
// in force (once each, in account order), from the store's states.
func (d *Daemon) identityStates(stored []tokens.Status) []identityState {
	byID := make(map[string]tokens.Status, len(stored))
	for _, st := range stored {
		byID[strings.ToLower(st.Identity)] = st
	}
	cfg := d.Config()
	seen := map[string]bool{}
	var out []identityState
	for _, a := range cfg.Accounts {
		key := strings.ToLower(a.Identity)
		if seen[key] {
			continue
		}
		seen[key] = true
		s := identityState{identity: a.Identity}
		if p := cfg.Providers[a.Provider]; p != nil {
			s.flow = p.Flow
		}
		st, ok := byID[key]
		if ok {
			s.status = st
		}
		s.needsLogin = s.flow != config.FlowClientCredentials && (!ok || st.State == tokens.StateNeedsLogin)
		out = append(out, s)
	}
	return out
}

// identityMetrics reports the identities' token states at each scrape.
func (d *Daemon) identityMetrics() []metrics.IdentityState {
	if d.ops.store == nil {
		return nil
	}
	stored, err := d.storeStates(time.Now())
	if err != nil {
		return nil // /readyz and the log say why
	}
	states := d.identityStates(stored)
	out := make([]metrics.IdentityState, 0, len(states))
	for _, s := range states {
		out = append(out, metrics.IdentityState{Identity: s.identity, Expiry: s.status.Expiry, NeedsLogin: s.needsLogin})
	}
	return out
}
