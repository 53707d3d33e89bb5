package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/memupstream"
	"github.com/xoauthd/xoauthd/internal/passhash"
	"github.com/xoauthd/xoauthd/internal/testidp"
	"github.com/xoauthd/xoauthd/internal/testsignin"
	"github.com/xoauthd/xoauthd/internal/testupstream"
	"github.com/xoauthd/xoauthd/proxy"
)

// The benchmark's account: what a legacy client types, and whose token
// xoauthd uses. The password is a throwaway for a loopback-only run.
const (
	benchIdentity = "alice@contoso.test"
	benchLogin    = "bench-alice"
	benchPassword = "bench-local-password"
	benchClientID = "3b0a7a2e-6f53-4a43-9d0b-7e51b1f0c0de"
	benchSender   = benchIdentity
	benchRcpt     = "sink@contoso.test" // SMTP recipient, away from alice's INBOX
	// directTokenTTL is the lifetime of the token the benchmark logs in
	// with directly; longer than any run.
	directTokenTTL = 6 * time.Hour
	// seedTimeout bounds signing the account in through the IdP.
	seedTimeout = 30 * time.Second
	// maxConnections is xoauthd's per-listener connection limit in the
	// generated configuration: above the largest session ramp.
	maxConnections = 20000
)

// Upstream kinds (--upstream).
const (
	upstreamDovecot = "dovecot"
	upstreamInproc  = "inproc"
)

// env is everything a run measures against: the identity provider, the
// upstream and the xoauthd process with its listen addresses.
type env struct {
	opts options
	log  *slog.Logger
	dir  string // configuration, token store and logs

	idp   *testidp.IdP
	dc    *testupstream.Dovecot // --upstream=dovecot
	dcPID int                   // Dovecot's master: its process group is Dovecot
	mem   *memupstream.Server   // --upstream=inproc

	// Upstream addresses and the dialers the direct side uses (one per
	// protocol, so TLS sessions resume as xoauthd's do).
	upIMAP, upPOP3, upSMTP string
	upDialers              map[string]*proxy.Dialer
	caFile                 string
	token                  string // the benchmark's own access token

	// xoauthd's listeners, configuration and process.
	imap, pop3, smtp string
	cfgPath          string
	xo               *daemonProc

	corpus      int   // messages delivered into the benchmark INBOX so far
	corpusBytes int64 // their total size
}

// startEnv brings up the identity provider, the upstream and xoauthd.
func startEnv(ctx context.Context, opts options, log *slog.Logger) (_ *env, err error) {
	dir, err := os.MkdirTemp("", "xoauthd-bench-")
	if err != nil {
		return nil, fmt.Errorf("creating the work directory: %w", err)
	}
	e := &env{opts: opts, log: log, dir: dir}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if e.idp, err = testidp.Start(testidp.Options{}); err != nil {
		return nil, fmt.Errorf("starting the identity provider: %w", err)
	}
	e.idp.AddClient(testidp.Client{ID: benchClientID, Public: true})
	e.idp.AddUser(benchIdentity)
	e.idp.AddUser(benchRcpt)
	e.token = e.idp.MintAccessToken(benchIdentity, directTokenTTL)
	if err := e.startUpstream(); err != nil {
		return nil, err
	}
	if e.cfgPath, err = e.writeConfig(); err != nil {
		return nil, err
	}
	if err := e.seedToken(ctx, e.cfgPath); err != nil {
		return nil, err
	}
	if e.xo, err = startDaemon(ctx, opts, e.dir, e.cfgPath, e.imap, log); err != nil {
		return nil, err
	}
	return e, nil
}

// restartDaemon stops xoauthd and starts a fresh process with the same
// configuration (and binary).
func (e *env) restartDaemon(ctx context.Context) error {
	if err := e.xo.stop(); err != nil {
		return err
	}
	opts := e.opts
	if opts.xoauthd == "" && opts.profileDir == "" {
		opts.xoauthd = filepath.Join(e.dir, daemonBinName) // built by the first start
	}
	xo, err := startDaemon(ctx, opts, e.dir, e.cfgPath, e.imap, e.log)
	if err != nil {
		return fmt.Errorf("restarting xoauthd: %w", err)
	}
	e.xo = xo
	return nil
}

// startUpstream starts Dovecot (tuned for speed) or the in-process server.
func (e *env) startUpstream() error {
	switch e.opts.upstream {
	case upstreamInproc:
		mem, err := memupstream.Start(memupstream.Options{Dir: e.dir})
		if err != nil {
			return fmt.Errorf("starting the in-process upstream: %w", err)
		}
		e.mem = mem
		mem.AddUser(benchIdentity)
		e.upIMAP, e.caFile = mem.Addr(), mem.CAFile()
	default:
		dc, err := testupstream.Start(testupstream.Options{JWTKey: e.idp.SigningKey()})
		if err != nil {
			return fmt.Errorf("starting dovecot: %w", err)
		}
		e.dc = dc
		// What Dovecot relays is read and counted, not written to disk and
		// kept: a sink holding every message would grow the benchmark's own
		// process through the run and add its garbage collection and disk
		// writes to the figures.
		dc.Sink.SetDiscard(true)
		if err := e.retuneDovecot(dovecotSpeed); err != nil {
			return err
		}
		e.upIMAP, e.upPOP3, e.upSMTP = dc.IMAPAddr, dc.POP3Addr, dc.SubmissionAddr
		e.caFile = dc.CAFile
	}
	e.upDialers = map[string]*proxy.Dialer{}
	for proto, up := range map[string]struct {
		addr string
		mode proxy.TLSMode
	}{config.ProtoIMAP: {e.upIMAP, proxy.TLSImplicit}, config.ProtoPOP3: {e.upPOP3, proxy.TLSImplicit},
		config.ProtoSMTP: {e.upSMTP, proxy.TLSStartTLS}} {
		if up.addr == "" {
			continue
		}
		d, err := proxy.NewDialer(up.addr, up.mode, e.caFile)
		if err != nil {
			return fmt.Errorf("the %s upstream: %w", proto, err)
		}
		e.upDialers[proto] = d
	}
	return nil
}

// has reports whether the upstream serves protocol.
func (e *env) has(protocol string) bool {
	switch protocol {
	case config.ProtoPOP3:
		return e.upPOP3 != ""
	case config.ProtoSMTP:
		return e.upSMTP != ""
	}
	return e.upIMAP != ""
}

// writeConfig writes xoauthd.yaml for the upstream in use.
func (e *env) writeConfig() (string, error) {
	hash, err := passhash.Hash(benchPassword)
	if err != nil {
		return "", fmt.Errorf("hashing the benchmark password: %w", err)
	}
	var servers strings.Builder
	add := func(proto, up, extra string) error {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		fmt.Fprintf(&servers, "  - {protocol: %s, listen: %q, upstream: %q, ca_file: %q, max_connections: %d%s}\n",
			proto, addr, up, e.caFile, maxConnections, extra)
		switch proto {
		case config.ProtoIMAP:
			e.imap = addr
		case config.ProtoPOP3:
			e.pop3 = addr
		case config.ProtoSMTP:
			e.smtp = addr
		}
		return nil
	}
	// One identity carries every benchmark session and the upstream is the
	// benchmark's own: the per-identity limit goes up to the connection limit.
	perIdentity := fmt.Sprintf(", max_upstream_per_identity: %d", maxConnections)
	if err := add(config.ProtoIMAP, e.upIMAP, perIdentity); err != nil {
		return "", err
	}
	if e.has(config.ProtoPOP3) {
		if err := add(config.ProtoPOP3, e.upPOP3, perIdentity); err != nil {
			return "", err
		}
	}
	if e.has(config.ProtoSMTP) {
		// send_rate 0: the benchmark measures relaying, not Exchange's
		// 30-a-minute pacing that the microsoft preset applies.
		if err := add(config.ProtoSMTP, e.upSMTP, ", upstream_tls: starttls, send_rate: 0"); err != nil {
			return "", err
		}
	}
	yaml := fmt.Sprintf(`log: {level: info}
store:
  path: %[1]s/tokens.json
  key: ${file:%[1]s/store.key}
providers:
  bench:
    type: microsoft
    tenant: %[2]s
    client_id: %[3]s
    flow: authcode
    authority: %[4]s
servers:
%[5]saccounts:
  - {login: %[6]s, password_hash: %[7]q, identity: %[8]s, provider: bench}
`, e.dir, e.idp.Tenant(), benchClientID, e.idp.Authority(), servers.String(), benchLogin, hash, benchIdentity)
	path := filepath.Join(e.dir, "xoauthd.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		return "", fmt.Errorf("writing the xoauthd configuration: %w", err)
	}
	return path, nil
}

// seedToken signs the benchmark identity in with the authorization code
// flow (the IdP plays the browser), as `xoauthd login` would, so that
// xoauthd starts with a cached token.
func (e *env) seedToken(ctx context.Context, cfgPath string) error {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return fmt.Errorf("loading the generated configuration: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, seedTimeout)
	defer cancel()
	return testsignin.SignIn(ctx, cfg, "bench", benchIdentity, e.idp.Authorize)
}

// deliver puts msg into the benchmark INBOX.
func (e *env) deliver(msg []byte) error {
	if e.mem != nil {
		return e.mem.Append(benchIdentity, "INBOX", msg)
	}
	return e.dc.Deliver(benchIdentity, msg)
}

// ensureCorpus delivers messages of size bytes into the INBOX until it
// holds n of them (every caller asks for the same size).
func (e *env) ensureCorpus(n, size int) error {
	if e.corpus >= n {
		return nil
	}
	body := messageBody(size)
	for ; e.corpus < n; e.corpus++ {
		msg := message(fmt.Sprintf("corpus-%d", e.corpus), body)
		if err := e.deliver(msg); err != nil {
			return fmt.Errorf("delivering message %d: %w", e.corpus, err)
		}
		e.corpusBytes += int64(len(msg))
	}
	return nil
}

// close stops everything that was started.
func (e *env) close() {
	if e.xo != nil {
		if err := e.xo.stop(); err != nil {
			e.log.Warn("stopping xoauthd", "err", err)
		}
	}
	if e.dc != nil {
		if err := e.dc.Close(); err != nil {
			e.log.Warn("stopping dovecot", "err", err)
		}
	}
	if e.mem != nil {
		_ = e.mem.Close()
	}
	if e.idp != nil {
		e.idp.Close()
	}
	if e.opts.keep {
		e.log.Info("kept the work directory", "dir", e.dir)
		return
	}
	_ = os.RemoveAll(e.dir)
}

// freeAddr returns a loopback address with a port that was free just now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free loopback port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// ---- Dovecot tuning ----

// Dovecot settings the benchmark appends to the rig's configuration. The
// rig has no options hook for them, so the benchmark appends to the file
// the rig generated and restarts Dovecot on the same ports (Dovecot merges
// a repeated service section into the first).
const (
	// dovecotSpeed keeps login and mail processes alive between sessions,
	// so that a login costs Dovecot an authentication, not a fork and exec,
	// and lifts the per user and IP connection limit (default 10).
	dovecotSpeed = `
# --- xoauthd benchmark: speed ---
mail_max_userip_connections = 100000
default_vsz_limit = 2G
service imap-login {
  service_count = 0
  process_min_avail = 2
  client_limit = 1000
}
service pop3-login {
  service_count = 0
  process_min_avail = 1
  client_limit = 1000
}
service submission-login {
  service_count = 0
  process_min_avail = 1
  client_limit = 1000
}
service imap {
  service_count = 0
  process_min_avail = 8
  process_limit = 200
}
service pop3 {
  service_count = 0
  process_min_avail = 2
}
service submission {
  service_count = 0
  process_min_avail = 4
}
`
	// dovecotSessions lets one Dovecot hold tens of thousands of idle IMAP
	// sessions: many clients per imap process (instead of a process per
	// session) and large login processes that proxy the TLS.
	dovecotSessions = `
# --- xoauthd benchmark: many idle sessions ---
service imap-login {
  client_limit = 8000
  process_limit = 8
  process_min_avail = 2
  vsz_limit = 4G
}
service imap {
  client_limit = 100
  process_limit = 1000
  process_min_avail = 2
  vsz_limit = 2G
}
service anvil {
  client_limit = 20000
}
service auth {
  client_limit = 20000
}
service log {
  client_limit = 20000
}
`
)

// retuneDovecot appends settings to the rig's dovecot.conf, restarts it
// and finds its master process.
func (e *env) retuneDovecot(settings string) error {
	if err := retuneDovecot(e.dc, settings); err != nil {
		return err
	}
	e.dcPID = findProcess("dovecot", filepath.Join(e.dc.Dir, "dovecot.conf"))
	if e.dcPID == 0 {
		e.log.Warn("dovecot's master process not found: its CPU time is not counted")
	}
	return nil
}

// retuneDovecot appends settings to the rig's dovecot.conf and restarts it.
func retuneDovecot(dc *testupstream.Dovecot, settings string) error {
	path := filepath.Join(dc.Dir, "dovecot.conf")
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("opening dovecot.conf to tune it: %w", err)
	}
	_, werr := io.WriteString(f, settings)
	if err := errors.Join(werr, f.Close()); err != nil {
		return fmt.Errorf("tuning dovecot.conf: %w", err)
	}
	if err := dc.Restart(); err != nil {
		return fmt.Errorf("restarting tuned dovecot: %w", err)
	}
	return nil
}
