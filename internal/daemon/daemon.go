package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/imapfront"
	"github.com/xoauthd/xoauthd/internal/notify"
	"github.com/xoauthd/xoauthd/pop3front"
	"github.com/xoauthd/xoauthd/proxy"
	"github.com/xoauthd/xoauthd/smtpfront"
	"github.com/xoauthd/xoauthd/tokens"
)

// Options tune a Daemon. Zero values take the defaults.
type Options struct {
	Log *slog.Logger // nil: slog.Default()
	// Tokens overrides the token manager (nil: one over cfg.Store).
	Tokens proxy.TokenSource
	// Credentials tunes the local credential check.
	Credentials proxy.CredentialOptions
	// OnPanic is passed to every proxy.Server (tests fail on recovered panics).
	OnPanic func(v any)
	// OnReload, when set, is called after every reload attempt with its
	// result, ReloadSuccess or ReloadFailure (the reload metric).
	OnReload func(result string)

	// smtpUpstreamWait, when set, replaces smtpfront's wait for a free
	// upstream session (for tests).
	smtpUpstreamWait time.Duration
}

// Daemon is a running set of listeners over a live configuration snapshot.
type Daemon struct {
	log      *slog.Logger
	snap     atomic.Pointer[snapshot]
	tokens   proxy.TokenSource
	manager  *tokens.Manager // nil when Options.Tokens was given
	creds    *proxy.Credentials
	dialers  proxy.Dialers
	ids      proxy.IDSource
	onPanic  func(v any)
	smtpWait time.Duration // Options.smtpUpstreamWait
	ops      ops           // metrics, admin endpoint, protocol trace (admin.go)
	keep     keepalive     // keep-alive and needs-a-person alerts (keepalive.go)

	pacer *smtpfront.Pacer // sending limits of every SMTP listener (smtp.go)

	// Reloads (reload.go).
	sessions proxy.Sessions       // logged-in sessions per login, for every Gateway
	limits   proxy.IdentityLimits // upstream sessions per protocol and identity, for every listener
	onReload func(result string)  // Options.OnReload
	reloadMu sync.Mutex           // one reload at a time

	mu        sync.Mutex
	runCtx    context.Context        // Serve's context; set by Start
	stopped   bool                   // set by Shutdown: reloads start no listener
	listeners []*listener            // in configuration order
	retiring  map[*listener]struct{} // removed by a reload, draining their sessions
	wg        sync.WaitGroup         // Serve loops and retiring listeners
}

// listener is one configured server and what serves it.
type listener struct {
	conf config.Server // as it was when the listener started
	key  string        // identifies the server across reloads (serverKeys)
	srv  *proxy.Server
	ln   net.Listener
}

// snapshot is an immutable configuration with its lookup indexes.
type snapshot struct {
	cfg        *config.Config
	byLogin    map[string]*config.Account // lower-cased login
	byIdentity map[string]*config.Account // lower-cased identity; first account wins
	servers    map[string]*config.Server  // by serverKeys
}

func newSnapshot(cfg *config.Config) *snapshot {
	s := &snapshot{cfg: cfg, byLogin: map[string]*config.Account{}, byIdentity: map[string]*config.Account{},
		servers: indexServers(cfg.Servers)}
	for i := range cfg.Accounts {
		a := &cfg.Accounts[i]
		s.byLogin[strings.ToLower(a.Login)] = a
		if _, ok := s.byIdentity[strings.ToLower(a.Identity)]; !ok {
			s.byIdentity[strings.ToLower(a.Identity)] = a
		}
	}
	return s
}

// New builds a Daemon for cfg (already validated). It opens the token store
// (creating its key when the key file is missing) but listens on nothing
// until Start.
func New(cfg *config.Config, opts Options) (*Daemon, error) {
	d := &Daemon{log: opts.Log, onPanic: opts.OnPanic, onReload: opts.OnReload, retiring: map[*listener]struct{}{},
		smtpWait: opts.smtpUpstreamWait}
	if d.log == nil {
		d.log = slog.Default()
	}
	for _, w := range cfg.Warnings() { // what validate prints as warnings
		d.log.Warn(w.Msg, "config", w.Path, "line", w.Line)
	}
	d.snap.Store(newSnapshot(cfg))
	d.initOps(cfg)
	d.pacer = d.newPacer()
	d.tokens = opts.Tokens
	if d.tokens == nil {
		key, created, err := tokens.LoadKey(cfg.Store)
		if err != nil {
			return nil, fmt.Errorf("loading the token store key: %w", err)
		}
		if created {
			d.log.Warn("created a new token store key", "file", cfg.Store.KeyFile)
		}
		store, err := tokens.OpenBackend(cfg.Store, key, d.log)
		if err != nil {
			return nil, fmt.Errorf("opening the token store: %w", err)
		}
		d.setStore(store)
		d.manager = tokens.NewManager(store, d.providerFor, tokens.Options{Logger: d.log, OnRefresh: d.ops.metrics.TokenRefreshed})
		d.tokens = d.manager
	}
	d.initKeepalive() // keep-alive and alerts over d.tokens (keepalive.go)
	d.SetAlertHooks(AlertHooks{
		OnKeepalive: d.ops.metrics.Keepalive,
		OnAlert:     func(a notify.Alert) { d.ops.metrics.Alert(a.Kind) },
		OnDelivery:  d.ops.metrics.NotifyDelivered,
	})
	copts := d.sharedFailures(opts.Credentials) // failures.go: in Redis with the redis store
	if copts.Log == nil {
		copts.Log = d.log
	}
	d.creds = proxy.NewCredentials(d.lookupLogin, copts)
	return d, nil
}

// Config returns the configuration in force.
func (d *Daemon) Config() *config.Config { return d.snap.Load().cfg }

// Tokens returns the token manager (nil when Options.Tokens replaced it).
func (d *Daemon) Tokens() *tokens.Manager { return d.manager }

// lookupLogin maps a local login to its account in the live snapshot.
func (d *Daemon) lookupLogin(login string) (proxy.Account, string, bool) {
	a, ok := d.snap.Load().byLogin[strings.ToLower(login)]
	if !ok {
		return proxy.Account{}, "", false
	}
	return proxy.Account{Login: a.Login, Identity: a.Identity, Mailbox: a.Mailbox, Provider: a.Provider}, a.PasswordHash.Reveal(), true
}

// providerFor returns the provider of an identity in the live snapshot.
func (d *Daemon) providerFor(identity string) (*config.Provider, error) {
	s := d.snap.Load()
	a, ok := s.byIdentity[strings.ToLower(identity)]
	if !ok {
		return nil, fmt.Errorf("identity %s is in no account of the configuration: add an account for it", identity)
	}
	p, ok := s.cfg.Providers[a.Provider]
	if !ok {
		return nil, fmt.Errorf("provider %q of identity %s is not configured", a.Provider, identity)
	}
	return p, nil
}

// upstreamFunc returns the Gateway.Upstream of one listener: its own upstream
// when set, else the default of the account's provider for its protocol. It
// reads the listener's settings (key) from the live snapshot, falling back to
// those it started with when a reload removed it.
func (d *Daemon) upstreamFunc(start config.Server, key string) func(proxy.Account) (*proxy.Dialer, error) {
	return func(acct proxy.Account) (*proxy.Dialer, error) {
		s := d.snap.Load()
		srv := start
		if cur, ok := s.servers[key]; ok {
			srv = *cur
		}
		p := s.cfg.Providers[acct.Provider]
		addr, mode := srv.UpstreamFor(p)
		if addr == "" {
			return nil, fmt.Errorf("no %s upstream for provider %q: set upstream on the %s server", srv.Protocol, acct.Provider, srv.Listen)
		}
		return d.dialers.Get(addr, proxy.TLSMode(mode), srv.CAFile)
	}
}

// upstreamsOf returns the upstreams a listener relays to for the accounts of
// the live configuration, one dialer each, for the SMTP front's start-up
// probe of their EHLO extensions.
func (d *Daemon) upstreamsOf(srv config.Server) func() []*proxy.Dialer {
	return func() []*proxy.Dialer {
		s := d.snap.Load()
		var out []*proxy.Dialer
		seen := map[string]bool{}
		for _, a := range s.cfg.Accounts {
			addr, mode := srv.UpstreamFor(s.cfg.Providers[a.Provider])
			if addr == "" || seen[addr+" "+mode] {
				continue
			}
			seen[addr+" "+mode] = true
			if dl, err := d.dialers.Get(addr, proxy.TLSMode(mode), srv.CAFile); err == nil {
				out = append(out, dl)
			}
		}
		return out
	}
}

// handler builds the protocol front of one listener (key: see serverKeys).
func (d *Daemon) handler(srv config.Server, key string, gw *proxy.Gateway) (proxy.Handler, error) {
	idle, preAuth := time.Duration(srv.IdleTimeout), time.Duration(srv.PreAuthTimeout)
	// Local TLS and the exposure policy (listentls.go): logins without TLS
	// only on loopback listeners or with allow_plaintext.
	tlsConf, implicit, err := d.listenerTLS(srv)
	if err != nil {
		return nil, err
	}
	plainLogin := !srv.LoginNeedsTLS()
	switch srv.Protocol {
	case config.ProtoIMAP:
		return imapfront.New(imapfront.Options{Gateway: gw, IdleTimeout: idle, PreAuthTimeout: preAuth,
			TLS: tlsConf, ImplicitTLS: implicit, AllowPlaintextLogin: plainLogin}), nil
	case config.ProtoPOP3:
		return pop3front.New(pop3front.Options{Gateway: gw, IdleTimeout: idle, PreAuthTimeout: preAuth,
			TLS: tlsConf, ImplicitTLS: implicit, AllowPlaintextLogin: plainLogin}), nil
	case config.ProtoSMTP:
		return smtpfront.New(smtpfront.Options{
			Gateway:                gw,
			PreAuthTimeout:         preAuth,
			IdleTimeout:            idle,
			MaxUpstreamPerIdentity: srv.MaxUpstreamPerIdentity,
			UpstreamWait:           d.smtpWait,
			Limits:                 &d.limits,
			AllowInsecureAuth:      plainLogin,
			TLS:                    tlsConf,
			ImplicitTLS:            implicit,
			Upstreams:              d.upstreamsOf(srv),
			NoAuth:                 d.noAuthFunc(srv, key), // smtp.go
			Pacer:                  d.pacer,
			SendRate:               d.sendRateFunc(srv, key),
		}), nil
	}
	return nil, fmt.Errorf("unknown protocol %q", srv.Protocol)
}

// Start starts the admin endpoint (when admin.listen is set), listens on
// every configured server and serves until Shutdown. When a
// listener cannot be opened, the ones already open are closed again.
func (d *Daemon) Start(ctx context.Context) error {
	if err := d.startAdmin(ctx); err != nil {
		return err
	}
	servers := d.Config().Servers
	ls, err := d.openListeners(ctx, servers, serverKeys(servers))
	if err != nil {
		_ = d.stopAdmin(ctx)
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.runCtx = ctx
	d.listeners = ls
	for _, l := range ls {
		d.serveLocked(ctx, l)
	}
	d.startKeepalive(ctx) // keepalive.go
	return nil
}

// openListeners opens a listener for each of servers (keys[i] identifies
// servers[i] across reloads), or none: when one cannot be opened, the ones
// already open are closed again.
func (d *Daemon) openListeners(ctx context.Context, servers []config.Server, keys []string) ([]*listener, error) {
	var ls []*listener
	for i, sc := range servers {
		gw := &proxy.Gateway{Auth: d.creds, Tokens: classifiedTokens{d.tokens}, Upstream: d.upstreamFunc(sc, keys[i]),
			Sessions: &d.sessions, Explain: explainLogin, Meter: proxy.Meter{Metrics: d.ops.metrics, Protocol: sc.Protocol}}
		if sc.Protocol != config.ProtoSMTP { // smtpfront applies its limit itself, waiting briefly
			gw.Limits, gw.LimitKey, gw.MaxPerIdentity = &d.limits, sc.Protocol, sc.MaxUpstreamPerIdentity
		}
		h, err := d.handler(sc, keys[i], gw)
		if err == nil {
			var ln net.Listener
			if ln, err = proxy.Listen(ctx, sc.Listen); err == nil {
				srv := &proxy.Server{Protocol: sc.Protocol, Handler: h, MaxConns: sc.MaxConnections,
					Log: d.log, IDs: &d.ids, OnPanic: d.onPanic}
				ls = append(ls, d.instrument(&listener{conf: sc, key: keys[i], srv: srv, ln: ln}))
				continue
			}
		}
		for _, l := range ls {
			l.ln.Close()
		}
		return nil, fmt.Errorf("starting the %s listener on %s: %w", sc.Protocol, sc.Listen, err)
	}
	return ls, nil
}

// serveLocked runs l's accept loop until its server shuts down. d.mu is
// held, so that Shutdown, which takes it first, waits for the loop.
func (d *Daemon) serveLocked(ctx context.Context, l *listener) {
	d.log.Info("listening", "proto", l.conf.Protocol, "addr", l.ln.Addr().String())
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := l.srv.Serve(ctx, l.ln); err != nil && !errors.Is(err, proxy.ErrServerClosed) {
			d.log.Error("listener stopped", "proto", l.conf.Protocol, "addr", l.conf.Listen, "err", err)
		}
	}()
}

// Addr returns the bound address of the first listener for protocol ("" when none),
// useful when the configuration asked for port 0.
func (d *Daemon) Addr(protocol string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, l := range d.listeners {
		if l.conf.Protocol == protocol {
			return l.ln.Addr().String()
		}
	}
	return ""
}

// Shutdown stops accepting on every listener, lets sessions drain until ctx
// is done, then closes what is left.
func (d *Daemon) Shutdown(ctx context.Context) error {
	d.mu.Lock()
	d.stopped = true
	ls := slices.Clone(d.listeners)
	for l := range d.retiring {
		ls = append(ls, l)
	}
	d.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(ls))
	for i, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.srv.Shutdown(ctx)
		}()
	}
	wg.Wait()
	d.wg.Wait()
	d.stopKeepalive(ctx) // keepalive.go: the keep-alive, then alert deliveries
	return errors.Join(append(errs, d.stopAdmin(ctx), d.closeStore())...)
}
