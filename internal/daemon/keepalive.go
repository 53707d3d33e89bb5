package daemon

import (
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/notify"
	"github.com/xoauthd/xoauthd/proxy"
	"github.com/xoauthd/xoauthd/tokens"
)

// keepalive is the daemon's background refresh of idle identities and its
// alerts when an identity needs a person. Its fields are set by
// initKeepalive (New) and startKeepalive (Start).
type keepalive struct {
	notifier *notify.Notifier
	keeper   *tokens.Keeper // nil when Options.Tokens replaced the token manager
	hooks    atomic.Pointer[AlertHooks]

	mu   sync.Mutex
	stop context.CancelFunc // ends the keeper; nil before Start
	done chan struct{}      // closed when the keeper has returned
}

// AlertHooks are the seams of the keep-alive and of the alerts for the
// metrics. Each may be nil.
type AlertHooks struct {
	// OnKeepalive is called after each keep-alive refresh attempt with the
	// identity and the result: tokens.KeepaliveRefreshed,
	// KeepaliveNeedsLogin, KeepaliveTemporary or KeepaliveError.
	OnKeepalive func(identity, result string)
	// OnAlert is called once for every new alert (an identity that needs a
	// new login or a configuration fix).
	OnAlert func(a notify.Alert)
	// OnDelivery is called after each delivery of an alert to a notify
	// hook: hook notify.HookCommand or HookWebhook, result
	// notify.DeliverySuccess, DeliveryFailure or DeliveryDropped.
	OnDelivery func(hook, result string)
}

// SetAlertHooks sets the metric seams of the keep-alive and the alerts. It
// may be called at any time; the hooks apply from then on.
func (d *Daemon) SetAlertHooks(h AlertHooks) { d.keep.hooks.Store(&h) }

// Alerts returns the identities that need a person, oldest first: a new
// login (Kind notify.KindNeedsLogin, with the command) or a configuration
// fix (notify.KindConfiguration). Each was logged once at ERROR and sent
// to the notify hooks; an alert goes away when the identity works again
// (a new login, or a successful refresh since).
func (d *Daemon) Alerts() []notify.Alert {
	d.reviewAlerts()
	return d.keep.notifier.Open()
}

// initKeepalive sets up the alerts over the token source in force, and the
// keep-alive over the token manager. New calls it once d.tokens is set.
func (d *Daemon) initKeepalive() {
	d.keep.notifier = notify.New(notify.Options{
		Log:   d.log,
		Hooks: d.notifyHooks,
		OnAlert: func(a notify.Alert) {
			if h := d.keep.hooks.Load(); h != nil && h.OnAlert != nil {
				h.OnAlert(a)
			}
		},
		OnDelivery: func(hook, result string) {
			if h := d.keep.hooks.Load(); h != nil && h.OnDelivery != nil {
				h.OnDelivery(hook, result)
			}
		},
	})
	d.tokens = &alertingTokens{next: d.tokens, d: d}
	if d.manager != nil {
		d.keep.keeper = tokens.NewKeeper(d.manager, tokens.KeeperOptions{
			Interval:   func() time.Duration { return d.Config().Tokens.KeepaliveInterval() },
			Identities: d.keepaliveIdentities,
			OnResult:   d.keepaliveResult,
			Logger:     d.log,
		})
	}
}

// startKeepalive runs the keep-alive until ctx is done or Shutdown.
func (d *Daemon) startKeepalive(ctx context.Context) {
	if d.keep.keeper == nil {
		return
	}
	kctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	d.keep.mu.Lock()
	d.keep.stop, d.keep.done = cancel, done
	d.keep.mu.Unlock()
	go func() {
		defer close(done)
		d.keep.keeper.Run(kctx)
	}()
}

// stopKeepalive ends the keep-alive and lets alert deliveries in progress
// finish until ctx is done.
func (d *Daemon) stopKeepalive(ctx context.Context) {
	d.keep.mu.Lock()
	stop, done := d.keep.stop, d.keep.done
	d.keep.stop = nil
	d.keep.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
	if err := d.keep.notifier.Close(ctx); err != nil {
		d.log.Warn("stopping before every alert was delivered", "err", err)
	}
}

// notifyHooks returns the notify section in force.
func (d *Daemon) notifyHooks() notify.Hooks {
	n := d.Config().Notify
	return notify.Hooks{Command: n.Command, Webhook: n.Webhook.Reveal(), Timeout: time.Duration(n.Timeout)}
}

// keepaliveIdentities returns the identities of the configuration in force
// that hold a refresh token (not those of client-credentials providers),
// once each. It is called before each keep-alive round, so it also closes
// the alerts that a login in the meantime has fixed.
func (d *Daemon) keepaliveIdentities() []string {
	d.reviewAlerts()
	cfg := d.Config()
	seen := map[string]bool{}
	var out []string
	for _, a := range cfg.Accounts {
		p := cfg.Providers[a.Provider]
		key := strings.ToLower(a.Identity)
		if p == nil || p.Flow == config.FlowClientCredentials || seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, a.Identity)
	}
	return out
}

// keepaliveResult counts one keep-alive result and raises or clears the
// identity's alerts.
func (d *Daemon) keepaliveResult(identity, result string, err error) {
	if result != tokens.KeepaliveNotDue && result != tokens.KeepaliveSkipped {
		if h := d.keep.hooks.Load(); h != nil && h.OnKeepalive != nil {
			h.OnKeepalive(identity, result)
		}
	}
	if result == tokens.KeepaliveRefreshed {
		d.observeToken(identity, nil)
		return
	}
	if err != nil {
		d.observeToken(identity, err)
	}
}

// alertingTokens is the token source every listener uses: the daemon's,
// watched for errors that need a person (every token a login, a refresh or
// a retry asks for passes here).
type alertingTokens struct {
	next proxy.TokenSource
	d    *Daemon
}

// Token implements proxy.TokenSource.
func (t *alertingTokens) Token(ctx context.Context, identity string) (string, error) {
	tok, err := t.next.Token(ctx, identity)
	t.d.observeToken(identity, err)
	return tok, err
}

// Refresh implements proxy.TokenSource.
func (t *alertingTokens) Refresh(ctx context.Context, identity, stale string) (string, error) {
	tok, err := t.next.Refresh(ctx, identity, stale)
	t.d.observeToken(identity, err)
	return tok, err
}

// observeToken raises an alert for an error that needs a person, and after
// a success closes the identity's alerts that are fixed.
func (d *Daemon) observeToken(identity string, err error) {
	if err == nil {
		for _, a := range d.keep.notifier.OpenFor(identity) {
			if d.alertFixed(a, true) {
				d.keep.notifier.Clear(a)
			}
		}
		return
	}
	if a, ok := d.alertFor(identity, err); ok {
		d.keep.notifier.Report(a)
	}
}

// reviewAlerts closes the alerts whose identity was logged in again, or
// refreshed successfully, since the alert.
func (d *Daemon) reviewAlerts() {
	for _, a := range d.keep.notifier.Open() {
		if d.alertFixed(a, false) {
			d.keep.notifier.Clear(a)
		}
	}
}

// alertFixed reports whether a is fixed. With stored tokens, the store
// decides: a login after the alert, or a refresh after it with no error
// since (a token that was merely still cached proves nothing). Without
// (client credentials, or a token source that is not the manager), a
// working token (success) does.
func (d *Daemon) alertFixed(a notify.Alert, success bool) bool {
	if d.manager == nil || d.appOnly(a.Identity) {
		return success
	}
	st, ok, err := d.manager.Status(a.Identity)
	if err != nil || !ok {
		return false
	}
	return st.LoggedIn.After(a.Time) || (st.LastError == "" && st.LastRefresh.After(a.Time))
}

// appOnly reports whether identity's provider uses client credentials.
func (d *Daemon) appOnly(identity string) bool {
	s := d.snap.Load()
	a, ok := s.byIdentity[strings.ToLower(identity)]
	if !ok {
		return false
	}
	p := s.cfg.Providers[a.Provider]
	return p != nil && p.Flow == config.FlowClientCredentials
}

// alertFor turns a token error that needs a person into an alert: words
// from the classified error, never its wrapped provider response.
func (d *Daemon) alertFor(identity string, err error) (notify.Alert, bool) {
	var (
		nl *tokens.NeedsLoginError
		ce *tokens.ConfigError
	)
	switch {
	case errors.As(err, &nl):
		return notify.Alert{Identity: identity, Kind: notify.KindNeedsLogin, Cause: nl.Meaning, Code: nl.Code,
			Fix: nl.Fix, Command: d.loginCommand(identity)}, true
	case errors.As(err, &ce):
		cause := ce.Meaning
		if ce.Provider != "" {
			cause = "provider " + ce.Provider + ": " + cause
		}
		return notify.Alert{Identity: identity, Kind: notify.KindConfiguration, Cause: cause, Code: ce.Code, Fix: ce.Fix}, true
	}
	return notify.Alert{}, false
}

// loginCommand is the exact command that logs identity in again, with the
// configuration file the daemon runs with.
func (d *Daemon) loginCommand(identity string) string {
	cmd := "xoauthd login "
	if path := d.Config().Path; path != "" {
		if abs, err := filepath.Abs(path); err == nil {
			path = abs
		}
		cmd += "--config " + shellQuote(path, runtime.GOOS == "windows") + " "
	}
	return cmd + shellQuote(identity, runtime.GOOS == "windows")
}

// shellQuote quotes s for a POSIX shell (single quotes) or for cmd and
// PowerShell (double quotes) when it holds anything but safe characters.
func shellQuote(s string, windows bool) string {
	plain := "@%+=:,./_-"
	if windows {
		plain += `\`
	}
	safe := s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(plain, r))
	}) < 0
	switch {
	case safe:
		return s
	case windows:
		return `"` + s + `"`
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
