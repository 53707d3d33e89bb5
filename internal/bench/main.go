// Command bench measures xoauthd against the direct connection to its
// upstream, on loopback only. It starts the test identity provider and
// either the Dovecot test rig (IMAPS, POP3S, submission with STARTTLS) or
// the in-process IMAP server, signs the benchmark account in, starts
// `xoauthd serve` as a separate process, and measures each scenario twice
// in the same run: straight to the upstream (TLS and SASL XOAUTH2 by the
// benchmark, with the fronts' own upstream logins) and through xoauthd
// (plain loopback, local password).
//
//	go run ./internal/bench                      # every scenario, full size
//	go run ./internal/bench --quick              # a few seconds of tiny counts (CI)
//	go run ./internal/bench --only fetch,login   # some scenarios
//	go run ./internal/bench --upstream=inproc    # IMAP scenarios against the in-process server
//	go run ./internal/bench --json               # machine-readable
//	go run ./internal/bench --profile DIR        # CPU and heap profiles of the daemon
//
// Scenarios: fetch (IMAP FETCH throughput, one session and several at
// once), login (latency of sequential logins, logins per second with many
// clients), sessions (a ramp to many idle IMAP sessions: failed connects,
// xoauthd's RSS per session and idle CPU), smtp (submission throughput)
// and pop3 (RETR throughput). The exit status is 1 when a scenario failed
// outright (an error, wrong byte counts, or in --quick mode any failed
// connect); missed targets are reported, not fatal. Dovecot needs root and
// the Debian dovecot packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/xoauthd/xoauthd/config"
)

// Exit statuses.
const (
	exitOK     = 0
	exitFailed = 1 // a scenario failed outright
	exitUsage  = 2
)

// Run limits.
const (
	fullDeadline  = 45 * time.Minute // a whole full run
	quickDeadline = 2 * time.Minute  // a whole --quick run
	// fileLimit is the RLIMIT_NOFILE the benchmark asks for: its own idle
	// sessions, and inherited by xoauthd (two descriptors per session) and
	// Dovecot.
	fileLimit = 131072
	// fdReserve is what xoauthd needs besides its sessions' descriptors
	// (listeners, log, epoll, the token store).
	fdReserve = 32
)

// sizes are the counts of one run.
type sizes struct {
	MailMsgs       int           `json:"mail_msgs"`       // FETCH and RETR corpus
	MailMsgSize    int           `json:"mail_msg_size"`   // bytes
	FetchParallel  int           `json:"fetch_parallel"`  // sessions fetching the corpus at once
	Logins         int           `json:"logins"`          // sequential login cycles per side
	LoginClients   int           `json:"login_clients"`   // clients of the login rate
	ParallelLogins int           `json:"parallel_logins"` // login cycles per side and round at once
	Sessions       int           `json:"sessions"`        // idle sessions of the ramp
	RampWorkers    int           `json:"ramp_workers"`    // connecting at once
	Settle         time.Duration `json:"settle"`          // before reading the plateau
	IdleWindow     time.Duration `json:"idle_window"`     // idle CPU measurement
	StrictConnects bool          `json:"strict_connects"` // a failed connect fails the run
	SMTPMsgs       int           `json:"smtp_msgs"`
	SMTPMsgSize    int           `json:"smtp_msg_size"`
	SMTPParallel   int           `json:"smtp_parallel"`
	Rounds         int           `json:"rounds"`
}

// fullSizes are the counts of the issue.
var fullSizes = sizes{
	MailMsgs: 200, MailMsgSize: 1 << 20, FetchParallel: 8,
	Logins: 1000, LoginClients: 32, ParallelLogins: 3200,
	Sessions: 10000, RampWorkers: 64, Settle: 2 * time.Second, IdleWindow: 10 * time.Second,
	SMTPMsgs: 1000, SMTPMsgSize: 100 << 10, SMTPParallel: 3,
	Rounds: 3,
}

// quickSizes keep a whole run to a few seconds.
var quickSizes = sizes{
	MailMsgs: 5, MailMsgSize: 64 << 10, FetchParallel: 2,
	Logins: 10, LoginClients: 4, ParallelLogins: 20,
	Sessions: 40, RampWorkers: 8, Settle: 100 * time.Millisecond, IdleWindow: 500 * time.Millisecond,
	StrictConnects: true,
	SMTPMsgs:       10, SMTPMsgSize: 10 << 10, SMTPParallel: 3,
	Rounds: 1,
}

// scenario is one measurement.
type scenario struct {
	name     string
	protocol string // what the upstream must serve
	// prepare, when set, runs before the daemon's CPU profile starts.
	prepare func(context.Context, *env, sizes) error
	run     func(context.Context, *env, sizes) ([]result, error)
}

// scenarios in the order they run: sessions last, because it retunes
// Dovecot for many idle sessions and replaces the daemon.
var scenarios = []scenario{
	{name: "fetch", protocol: config.ProtoIMAP, run: runFetch},
	{name: "pop3", protocol: config.ProtoPOP3, run: runPOP3},
	{name: "login", protocol: config.ProtoIMAP, run: runLogin},
	{name: "smtp", protocol: config.ProtoSMTP, run: runSMTP},
	{name: "sessions", protocol: config.ProtoIMAP, prepare: prepareSessions, run: runSessions},
}

// options are the command line.
type options struct {
	quick      bool
	upstream   string
	only       []string
	json       bool
	rounds     int
	sessions   int
	xoauthd    string
	profileDir string
	keep       bool
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == profiledDaemonArg {
		os.Exit(runProfiledDaemon(os.Args[2:], os.Stderr))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// parseOptions reads the command line.
func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.quick, "quick", false, "a few seconds of tiny counts (the CI smoke run)")
	fs.StringVar(&o.upstream, "upstream", upstreamDovecot, "dovecot (the test rig) or inproc (the in-process IMAP server; IMAP scenarios only)")
	only := fs.String("only", "", "comma-separated scenarios to run: "+scenarioNames())
	fs.BoolVar(&o.json, "json", false, "print the report as JSON")
	fs.IntVar(&o.rounds, "rounds", 0, "rounds per measurement (default 3, 1 with --quick)")
	fs.IntVar(&o.sessions, "sessions", 0, "idle sessions of the ramp (default 10000, 40 with --quick)")
	fs.StringVar(&o.xoauthd, "xoauthd", "", "xoauthd binary to run (default: go build ./cmd/xoauthd)")
	fs.StringVar(&o.profileDir, "profile", "", "directory for CPU and heap profiles of the daemon (runs the daemon code inside this binary)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (configuration, xoauthd log)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.upstream != upstreamDovecot && o.upstream != upstreamInproc {
		return o, fmt.Errorf("--upstream %q: want %s or %s", o.upstream, upstreamDovecot, upstreamInproc)
	}
	for _, name := range strings.Split(*only, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		if !slices.ContainsFunc(scenarios, func(s scenario) bool { return s.name == name }) {
			return o, fmt.Errorf("--only: unknown scenario %q (want %s)", name, scenarioNames())
		}
		o.only = append(o.only, name)
	}
	if o.rounds < 0 || o.sessions < 0 {
		return o, errors.New("--rounds and --sessions must not be negative")
	}
	return o, nil
}

func scenarioNames() string {
	names := make([]string, len(scenarios))
	for i, s := range scenarios {
		names[i] = s.name
	}
	return strings.Join(names, ",")
}

// sizesFor returns the counts for the options.
func sizesFor(o options) sizes {
	sz := fullSizes
	if o.quick {
		sz = quickSizes
	}
	if o.rounds > 0 {
		sz.Rounds = o.rounds
	}
	if o.sessions > 0 {
		sz.Sessions = o.sessions
	}
	return sz
}

// run is the whole benchmark; it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseOptions(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "bench: %v\n", err)
		}
		return exitUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	deadline := fullDeadline
	if o.quick {
		deadline = quickDeadline
	}
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	nofile, err := raiseFileLimit(fileLimit)
	sz := sizesFor(o)
	if err != nil || nofile < uint64(2*sz.Sessions+fdReserve) {
		log.Warn("the open file limit is too low for the session ramp: xoauthd needs two descriptors per session, so some connects will fail",
			"want", fileLimit, "have", nofile, "sessions_possible", (int(nofile)-fdReserve)/2, "err", err)
	}
	start := time.Now()
	rep := &report{
		Machine: describeMachine(o.upstream, nofile),
		Options: reportOpts{Quick: o.quick, Upstream: o.upstream, Rounds: sz.Rounds, Sizes: sz, Profile: o.profileDir},
	}
	e, err := startEnv(ctx, o, log)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return exitFailed
	}
	runScenarios(ctx, e, o, sz, rep, log)
	e.close()
	rep.Duration = roundDuration(time.Since(start))
	rep.Machine.LoadEnd = loadAverage()
	if o.json {
		err = rep.writeJSON(stdout)
	} else {
		err = rep.writeText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "bench: writing the report: %v\n", err)
		return exitFailed
	}
	if len(rep.Failures) > 0 {
		return exitFailed
	}
	return exitOK
}

// runScenarios runs the selected scenarios into rep.
func runScenarios(ctx context.Context, e *env, o options, sz sizes, rep *report, log *slog.Logger) {
	for _, sc := range scenarios {
		if len(o.only) > 0 && !slices.Contains(o.only, sc.name) {
			continue
		}
		if !e.has(sc.protocol) {
			log.Warn("skipping: the upstream does not serve it", "scenario", sc.name, "upstream", o.upstream)
			continue
		}
		log.Info("running", "scenario", sc.name)
		t0 := time.Now()
		if sc.prepare != nil {
			if err := sc.prepare(ctx, e, sz); err != nil {
				log.Error("scenario failed", "scenario", sc.name, "err", err)
				rep.Failures = append(rep.Failures, failure{Scenario: sc.name, Error: err.Error()})
				continue
			}
		}
		if _, err := e.xo.control(ctx, ctlCPUStart, sc.name); err != nil {
			log.Warn("cpu profile", "err", err)
		}
		res, err := sc.run(ctx, e, sz)
		if _, perr := e.xo.control(ctx, ctlCPUStop, ""); perr != nil {
			log.Warn("cpu profile", "err", perr)
		}
		rep.Results = append(rep.Results, res...)
		if err == nil {
			err = e.xo.alive()
		}
		if err != nil {
			log.Error("scenario failed", "scenario", sc.name, "err", err)
			rep.Failures = append(rep.Failures, failure{Scenario: sc.name, Error: err.Error()})
			continue
		}
		log.Info("done", "scenario", sc.name, "took", time.Since(t0).Round(time.Millisecond))
	}
}
