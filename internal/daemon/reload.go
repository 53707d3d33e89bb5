package daemon

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/proxy"
)

// Results of a reload attempt, passed to Options.OnReload.
const (
	ReloadSuccess = "success"
	ReloadFailure = "failure"
)

// Why a reload ends a session (proxy.Sessions.Close reasons).
var (
	errAccountRemoved  = errors.New("the account was removed from the configuration")
	errPasswordChanged = errors.New("the password_hash of the account changed in the configuration")
)

// Sessions returns the registry of logged-in sessions.
func (d *Daemon) Sessions() *proxy.Sessions { return &d.sessions }

// Watch reloads the configuration file at path whenever it changes, debounced
// (see config.Watch), until ctx is done or the Watcher is closed: a good file
// goes to Reload, a bad one to ReloadFailed.
func (d *Daemon) Watch(ctx context.Context, path string, debounce time.Duration) (*config.Watcher, error) {
	return config.Watch(ctx, path, debounce, func(cfg *config.Config, err error) {
		if err != nil {
			d.ReloadFailed(path, err)
			return
		}
		d.Reload(cfg)
	})
}

// ReloadFile loads the configuration file at path again (on SIGHUP) and puts
// it in force with Reload, or reports it with ReloadFailed and returns the
// load error.
func (d *Daemon) ReloadFile(path string) error {
	cfg, err := config.Load(path)
	if err != nil {
		d.ReloadFailed(path, err)
		return err
	}
	d.Reload(cfg)
	return nil
}

// ReloadFailed reports a configuration file that could not be loaded: every
// problem is logged at ERROR with its YAML path and line, and the
// configuration in force stays as it is.
func (d *Daemon) ReloadFailed(path string, err error) {
	var problems config.Problems
	if errors.As(err, &problems) {
		for _, p := range problems {
			d.log.Error("configuration problem", "config", path, "line", p.Line, "problem", p.String())
		}
		d.log.Error("configuration not reloaded: fix the problems above (xoauthd validate lists them); the previous configuration stays in force",
			"config", path, "problems", len(problems))
	} else {
		d.log.Error("configuration not reloaded; the previous configuration stays in force", "config", path, "err", err)
	}
	d.reloaded(ReloadFailure)
}

// Reload puts cfg, as loaded and validated by config.Load, in force. The
// next login sees its accounts, providers and upstreams. Sessions go on,
// except those of an account that was removed or whose password_hash
// changed: they are closed (see proxy.Sessions). Listeners are started for
// servers that are new (or whose listen address changed) and stopped for
// those that are gone; a stopped listener's sessions go on until they end.
// What is read only at start (store, admin, log, and a listener's limits,
// timeouts and TLS) is logged as needing a restart.
func (d *Daemon) Reload(cfg *config.Config) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	next := newSnapshot(cfg)
	prev := d.snap.Swap(next)
	d.closeChangedSessions(prev, next)
	d.applyListeners(next)
	d.warnRestartNeeded(prev.cfg, cfg)
	d.log.Info("configuration reloaded", "config", cfg.Path, "accounts", len(cfg.Accounts),
		"providers", len(cfg.Providers), "servers", len(cfg.Servers))
	d.reloaded(ReloadSuccess)
}

// reloaded reports a reload attempt's result to Options.OnReload.
func (d *Daemon) reloaded(result string) {
	if d.onReload != nil {
		d.onReload(result)
	}
}

// closeChangedSessions closes the sessions of every account of prev that
// next removed or gave another password_hash. It runs after the swap, so a
// login that checked its password against prev is refused by the registry.
func (d *Daemon) closeChangedSessions(prev, next *snapshot) {
	for key, old := range prev.byLogin {
		cur, ok := next.byLogin[key]
		var reason error
		switch {
		case !ok:
			reason = errAccountRemoved
		case cur.PasswordHash != old.PasswordHash:
			reason = errPasswordChanged
		case cur.Identity != old.Identity || cur.Mailbox != old.Mailbox || cur.Provider != old.Provider:
			d.log.Info("account changed: new logins use the new mapping, open sessions keep theirs until they end",
				"login", old.Login, "sessions", d.sessions.Count(key))
			continue
		default:
			continue
		}
		n := d.sessions.Close(key, reason)
		d.log.Info("closed the sessions of the account", "login", old.Login, "reason", reason.Error(), "sessions", n)
	}
}

// applyListeners starts and stops listeners so that they match next's
// servers. It changes nothing when a new listener cannot be opened, and
// nothing before Start or after Shutdown began.
func (d *Daemon) applyListeners(next *snapshot) {
	d.mu.Lock()
	ctx, cur, stopped := d.runCtx, d.listeners, d.stopped
	d.mu.Unlock()
	if ctx == nil || stopped {
		return
	}
	servers := next.cfg.Servers
	keys := serverKeys(servers)
	have := make(map[string]*listener, len(cur))
	for _, l := range cur {
		have[l.key] = l
	}
	var add []config.Server
	var addKeys []string
	for i, k := range keys {
		if _, ok := have[k]; !ok {
			add, addKeys = append(add, servers[i]), append(addKeys, k)
		}
	}
	opened, err := d.openListeners(ctx, add, addKeys)
	if err != nil {
		d.log.Error("listeners unchanged: a new listener could not be started; fix the configuration and it is retried on the next reload "+
			"(moving an address from one server to another needs a restart)", "err", err)
		return
	}
	byKey := make(map[string]*listener, len(opened))
	for _, l := range opened {
		byKey[l.key] = l
	}
	ls := make([]*listener, 0, len(keys))
	for _, k := range keys {
		if l, ok := have[k]; ok {
			ls = append(ls, l)
			delete(have, k)
		} else {
			ls = append(ls, byKey[k])
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		for _, l := range opened {
			l.ln.Close()
		}
		return
	}
	d.listeners = ls
	for _, l := range opened {
		d.serveLocked(ctx, l)
	}
	for _, l := range cur {
		if _, gone := have[l.key]; gone {
			d.retireLocked(l)
		}
	}
}

// retireLocked stops l from accepting and lets its sessions end by
// themselves (Shutdown drains what is left).
// d.mu is held.
func (d *Daemon) retireLocked(l *listener) {
	d.log.Info("stopped listening: the server is no longer in the configuration; its open sessions go on until they end",
		"proto", l.conf.Protocol, "addr", l.ln.Addr().String(), "sessions", l.srv.ActiveConns())
	d.retiring[l] = struct{}{}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		_ = l.srv.Retire(context.Background()) // returns when the last session ended
		d.mu.Lock()
		delete(d.retiring, l)
		d.mu.Unlock()
	}()
}

// warnRestartNeeded logs, at WARN, each change between prev and next that
// only a restart applies.
func (d *Daemon) warnRestartNeeded(prev, next *config.Config) {
	restart := func(what string, args ...any) {
		d.log.Warn(what+" changed: restart xoauthd to apply it", args...)
	}
	// A key that was missing at start was created by the daemon, so the
	// next load reads one: that is no change.
	keyChanged := prev.Store.Key != "" && prev.Store.Key != next.Store.Key
	if prev.Store.Path != next.Store.Path || prev.Store.KeyFile != next.Store.KeyFile || keyChanged {
		restart("store")
	}
	if !reflect.DeepEqual(prev.Admin, next.Admin) {
		restart("admin", "from", prev.Admin.Listen, "to", next.Admin.Listen)
	}
	if !reflect.DeepEqual(prev.Log, next.Log) {
		restart("log")
	}
	old := indexServers(prev.Servers)
	keys := serverKeys(next.Servers)
	for i := range next.Servers {
		o, ok := old[keys[i]]
		if !ok {
			continue
		}
		if fields := startOnlyChanges(o, &next.Servers[i]); len(fields) > 0 {
			restart(fmt.Sprintf("servers[%d] %s", i, strings.Join(fields, ", ")),
				"proto", next.Servers[i].Protocol, "listen", next.Servers[i].Listen)
		}
	}
}

// liveServerFields are the listener settings read at each login (by
// upstreamFunc, noAuthFunc and sendRateFunc); every other one is read only when the
// listener starts.
var liveServerFields = map[string]bool{"Upstream": true, "UpstreamTLS": true, "CAFile": true, "NoAuth": true, "SendRate": true}

// startOnlyChanges names (by YAML key) the settings of a listener that
// differ between a and b and are read only when the listener starts.
func startOnlyChanges(a, b *config.Server) []string {
	var fields []string
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	for i := range va.NumField() {
		f := va.Type().Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if key == "" || key == "-" || liveServerFields[f.Name] {
			continue
		}
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			fields = append(fields, key)
		}
	}
	return fields
}

// serverKeys identifies each server across reloads by its protocol and
// listen address as written, numbered among equal ones (several listeners
// may ask for port 0). A server whose key is unchanged keeps its listener.
func serverKeys(servers []config.Server) []string {
	keys := make([]string, len(servers))
	seen := make(map[string]int, len(servers))
	for i, s := range servers {
		k := s.Protocol + " " + s.Listen
		keys[i] = fmt.Sprintf("%s #%d", k, seen[k])
		seen[k]++
	}
	return keys
}

// indexServers maps serverKeys to the servers.
func indexServers(servers []config.Server) map[string]*config.Server {
	keys := serverKeys(servers)
	m := make(map[string]*config.Server, len(servers))
	for i := range servers {
		m[keys[i]] = &servers[i]
	}
	return m
}
