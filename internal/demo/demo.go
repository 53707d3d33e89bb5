package demo

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/daemon"
	"github.com/xoauthd/xoauthd/internal/memupstream"
	"github.com/xoauthd/xoauthd/internal/passhash"
	"github.com/xoauthd/xoauthd/internal/testidp"
	"github.com/xoauthd/xoauthd/tokens"
)

// The demo account: what a mail client types, and whose token it uses.
const (
	Login    = "demo"
	Password = "demo"
	Identity = "demo@contoso.test"
)

// Defaults of Options, the ports of config.example.yaml.
const (
	DefaultHost     = "127.0.0.1"
	DefaultIMAPPort = 1143
	DefaultPOP3Port = 1110
	DefaultSMTPPort = 1587
	// DefaultConsolePort is the admin endpoint's port, with the console.
	DefaultConsolePort = 9925
)

// Timeouts of the demo.
const (
	// loginTimeout bounds the authorization code flow at start.
	loginTimeout = 30 * time.Second
	// maxRedirectBody bounds what is read of the sign-in redirect's page.
	maxRedirectBody = 64 << 10
	// ShutdownDrain is how long Run lets sessions finish when it stops.
	ShutdownDrain = 5 * time.Second
)

// Options configure the demo. The zero value listens on any free loopback
// ports.
type Options struct {
	// Host is the listen address of the three servers; empty means
	// DefaultHost. It must be an IP address or "localhost".
	Host string
	// IMAPPort, POP3Port and SMTPPort are the ports to listen on; a port
	// that is taken is replaced by a free one (Listener.Moved), and 0 means
	// any free port.
	IMAPPort, POP3Port, SMTPPort int
	// ConsolePort is the port of the admin endpoint, which serves the
	// console (same rules).
	ConsolePort int
	// Log receives the daemon's log and the demo's progress; nil discards.
	Log *slog.Logger
	// OnPanic is passed to the daemon's servers (tests fail on recovered
	// panics).
	OnPanic func(v any)
}

// Env is a running demo.
type Env struct {
	log       *slog.Logger
	host      string
	dir       string // temporary: configuration, token store, CA file
	idp       *testidp.IdP
	mail      *memupstream.Server
	pop3      *memupstream.POP3
	smtp      *memupstream.SMTP
	cfg       *config.Config
	d         *daemon.Daemon
	cancel    context.CancelFunc // ends the daemon's run context
	listeners []Listener
	console   Listener // the admin endpoint with the console; Addr set by Start
	// consolePassword is the console's password, made up at start.
	consolePassword string

	closeOnce sync.Once
	closeErr  error
}

// Start starts the identity provider, the mail server and the daemon,
// signs the demo identity in and seeds its INBOX. ctx bounds the setup
// only; the demo runs until Close.
func Start(ctx context.Context, opts Options) (_ *Env, err error) {
	if opts.Host == "" {
		opts.Host = DefaultHost
	}
	if err := CheckHost(opts.Host); err != nil {
		return nil, err
	}
	e := &Env{log: opts.Log, host: opts.Host, listeners: []Listener{
		{Protocol: config.ProtoIMAP, Wanted: opts.IMAPPort},
		{Protocol: config.ProtoPOP3, Wanted: opts.POP3Port},
		{Protocol: config.ProtoSMTP, Wanted: opts.SMTPPort},
	}, console: Listener{Protocol: "console", Wanted: opts.ConsolePort}, consolePassword: rand.Text()}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	defer func() {
		if err != nil {
			_ = e.Close(context.Background())
		}
	}()
	if e.dir, err = os.MkdirTemp("", "xoauthd-demo-"); err != nil {
		return nil, fmt.Errorf("making the demo's temporary directory: %w", err)
	}
	if err := e.startProviders(); err != nil {
		return nil, err
	}
	hash, err := passhash.Hash(Password)
	if err != nil {
		return nil, fmt.Errorf("hashing the demo password: %w", err)
	}
	consoleHash, err := passhash.Hash(e.consolePassword)
	if err != nil {
		return nil, fmt.Errorf("hashing the console password: %w", err)
	}
	console := func(anyPort bool) consoleConf {
		return consoleConf{listen: plan(e.host, []Listener{e.console}, anyPort)[0], passwordHash: consoleHash}
	}
	up := upstreams{imap: e.mail.Addr(), pop3: e.pop3.Addr(), smtp: e.smtp.Addr(),
		authority: e.idp.Authority(), tenant: e.idp.Tenant()}
	if e.cfg, err = writeConfig(e.dir, up, e.listeners, plan(e.host, e.listeners, false), hash, console(false)); err != nil {
		return nil, err
	}
	if err := e.authorize(ctx); err != nil {
		return nil, err
	}
	if err := e.startDaemon(opts); err != nil {
		// A wanted port may have been taken since it was found free.
		e.log.Debug("starting on the wanted ports failed; trying free ones", "err", err)
		if e.cfg, err = writeConfig(e.dir, up, e.listeners, plan(e.host, e.listeners, true), hash, console(true)); err != nil {
			return nil, err
		}
		if err := e.startDaemon(opts); err != nil {
			return nil, err
		}
	}
	for i := range e.listeners {
		e.listeners[i].Addr = e.d.Addr(e.listeners[i].Protocol)
	}
	e.console.Addr = e.d.AdminAddr()
	return e, nil
}

// startProviders starts the identity provider and the mail server, and
// seeds the demo INBOX.
func (e *Env) startProviders() error {
	var err error
	if e.idp, err = testidp.Start(testidp.Options{}); err != nil {
		return fmt.Errorf("starting the demo identity provider: %w", err)
	}
	e.idp.AddClient(testidp.Client{ID: clientID, Public: true})
	e.idp.AddUser(Identity)
	v := tokenVerifier{key: e.idp.SigningKey(), now: time.Now}
	if e.mail, err = memupstream.Start(memupstream.Options{Validate: v.verify, Dir: e.dir,
		Scope: outlookAudience + "/.default"}); err != nil {
		return fmt.Errorf("starting the demo mail server: %w", err)
	}
	if e.pop3, err = e.mail.StartPOP3(memupstream.POP3Options{}); err != nil {
		return fmt.Errorf("starting the demo mail server: %w", err)
	}
	if e.smtp, err = e.mail.StartSMTP(memupstream.SMTPOptions{Domain: "mail.contoso.test"}); err != nil {
		return fmt.Errorf("starting the demo mail server: %w", err)
	}
	e.mail.AddUser(Identity)
	if err := e.mail.Append(Identity, "INBOX", welcomeMessage(time.Now())); err != nil {
		return fmt.Errorf("seeding the demo mailbox: %w", err)
	}
	return nil
}

// authorize signs the demo identity in with the authorization code flow of
// `xoauthd login`; the identity provider consents for the user and the
// "browser" follows its redirect back to the flow's loopback listener.
func (e *Env) authorize(ctx context.Context) error {
	key, _, err := tokens.LoadKey(e.cfg.Store)
	if err != nil {
		return fmt.Errorf("creating the demo token store key: %w", err)
	}
	store, err := tokens.OpenStore(e.cfg.Store.Path, key)
	if err != nil {
		return fmt.Errorf("opening the demo token store: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, loginTimeout)
	defer cancel()
	client := &http.Client{Timeout: loginTimeout}
	browser := func(authURL string) error {
		redirect, err := e.idp.Authorize(authURL)
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, redirect, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxRedirectBody))
		return resp.Body.Close()
	}
	res, err := tokens.Login(ctx, store, e.cfg.Providers[providerName], Identity,
		tokens.LoginOptions{OpenBrowser: browser, HTTPClient: client})
	if err != nil {
		return fmt.Errorf("signing the demo identity in: %w", err)
	}
	e.log.Info("demo identity signed in with the authorization code flow",
		"identity", res.Identity, "scopes", strings.Join(res.Scopes, " "), "expiry", res.Expiry.Format(time.TimeOnly))
	return nil
}

// startDaemon builds and starts the daemon for e.cfg.
func (e *Env) startDaemon(opts Options) error {
	d, err := daemon.New(e.cfg, daemon.Options{Log: e.log, OnPanic: opts.OnPanic})
	if err != nil {
		return fmt.Errorf("starting the demo daemon: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := d.Start(ctx); err != nil {
		cancel()
		return err
	}
	e.d, e.cancel = d, cancel
	return nil
}

// Listeners returns the three local servers with their addresses.
func (e *Env) Listeners() []Listener { return append([]Listener(nil), e.listeners...) }

// Addr returns where the daemon listens for protocol ("" when it does not).
func (e *Env) Addr(protocol string) string {
	for _, l := range e.listeners {
		if l.Protocol == protocol {
			return l.Addr
		}
	}
	return ""
}

// ConsoleURL returns the console's address as a browser on this machine
// opens it: http://localhost:PORT/, the form the identity provider's
// redirect back after Connect needs.
func (e *Env) ConsoleURL() string {
	_, port, _ := net.SplitHostPort(e.console.Addr)
	return "http://localhost:" + port + "/"
}

// ConsolePassword returns the console's password, made up at start.
func (e *Env) ConsolePassword() string { return e.consolePassword }

// Dir returns the temporary directory, removed by Close.
func (e *Env) Dir() string { return e.dir }

// ConfigPath returns the written configuration file.
func (e *Env) ConfigPath() string { return e.cfg.Path }

// Close stops the daemon (sessions may finish until ctx is done), the mail
// server and the identity provider, and removes the temporary directory.
// It is safe to call more than once.
func (e *Env) Close(ctx context.Context) error {
	e.closeOnce.Do(func() { e.closeErr = e.close(ctx) })
	return e.closeErr
}

func (e *Env) close(ctx context.Context) error {
	var errs []error
	if e.d != nil {
		if err := e.d.Shutdown(ctx); err != nil {
			e.log.Warn("demo sessions closed at the end of the drain time", "err", err)
		}
		e.cancel()
	}
	if e.smtp != nil {
		errs = append(errs, e.smtp.Close())
	}
	if e.pop3 != nil {
		errs = append(errs, e.pop3.Close())
	}
	if e.mail != nil {
		errs = append(errs, e.mail.Close())
	}
	if e.idp != nil {
		e.idp.Close()
	}
	if e.dir != "" {
		if err := removeTree(e.dir, os.RemoveAll, os.Remove); err != nil {
			errs = append(errs, fmt.Errorf("removing the demo's temporary directory: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Run starts the demo, writes the instructions to out and runs until ctx
// is cancelled; then it stops everything and removes its files. A
// cancellation during setup is not an error.
func Run(ctx context.Context, opts Options, out io.Writer) error {
	e, err := Start(ctx, opts)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if err := e.WriteInstructions(out); err != nil {
		_ = e.Close(context.Background())
		return fmt.Errorf("writing the instructions: %w", err)
	}
	<-ctx.Done()
	e.log.Info("stopping the demo")
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownDrain)
	defer cancel()
	if err := e.Close(sctx); err != nil {
		return err
	}
	e.log.Info("demo stopped; its temporary files are removed", "dir", e.dir)
	return nil
}
