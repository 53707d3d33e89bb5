package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	rpprof "runtime/pprof"
	"sync"
	"syscall"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/daemon"
)

// profiledDaemonArg, as the first argument, makes the benchmark binary run
// xoauthd itself (internal/daemon, as `xoauthd serve` does) with a loopback
// control endpoint that takes CPU and heap profiles on request. The
// benchmark starts it as its separate daemon process when --profile is set.
const profiledDaemonArg = "profiled-daemon"

// Control endpoint actions of the profiled daemon.
const (
	ctlCPUStart  = "cpu/start" // starts a CPU profile into cpu-NAME.pprof
	ctlCPUStop   = "cpu/stop"  // stops it
	ctlHeap      = "heap"      // GC, then heap-NAME.pprof and goroutine-NAME.pprof
	ctlMemStats  = "memstats"  // GC, then runtimeMem as JSON
	drainTimeout = 5 * time.Second
	ctlReadLimit = 10 * time.Second // read header timeout of the control server
)

// profileName restricts profile names to safe file name parts.
var profileName = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

// runtimeMem is what the profiled daemon reports of its Go runtime.
type runtimeMem struct {
	HeapInuse    uint64 `json:"heap_inuse"`
	StackInuse   uint64 `json:"stack_inuse"`
	Sys          uint64 `json:"sys"`
	HeapObjects  uint64 `json:"heap_objects"`
	NumGoroutine int    `json:"goroutines"`
}

// runProfiledDaemon is the profiled-daemon mode: it serves the
// configuration until SIGTERM or SIGINT.
func runProfiledDaemon(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet(profiledDaemonArg, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "xoauthd configuration file")
	ctl := fs.String("ctl", "", "loopback host:port of the profiling control endpoint")
	dir := fs.String("profile-dir", "", "directory the profiles are written to")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := serveProfiled(*cfgPath, *ctl, *dir, stderr); err != nil {
		fmt.Fprintf(stderr, "profiled daemon: %v\n", err)
		return 1
	}
	return 0
}

func serveProfiled(cfgPath, ctl, dir string, stderr io.Writer) error {
	if host, _, err := net.SplitHostPort(ctl); err != nil || !net.ParseIP(host).IsLoopback() {
		return fmt.Errorf("--ctl %q: want a loopback host:port", ctl)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating the profile directory: %w", err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	d, err := daemon.New(cfg, daemon.Options{Log: log})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := d.Start(runCtx); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", ctl)
	if err != nil {
		return fmt.Errorf("listening for profiling control: %w", err)
	}
	srv := &http.Server{Handler: (&profiler{dir: dir}).routes(), ReadHeaderTimeout: ctlReadLimit}
	go func() { _ = srv.Serve(ln) }()
	log.Info("profiled xoauthd started", "config", cfgPath, "ctl", ctl, "profiles", dir)
	<-ctx.Done()
	_ = srv.Close()
	sctx, scancel := context.WithTimeout(context.Background(), drainTimeout)
	defer scancel()
	if err := d.Shutdown(sctx); err != nil {
		log.Warn("sessions closed at the end of the drain time", "err", err)
	}
	return nil
}

// profiler serves the control endpoint.
type profiler struct {
	dir string

	mu  sync.Mutex
	cpu *os.File // the running CPU profile; nil when none
}

func (p *profiler) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /"+ctlCPUStart, p.cpuStart)
	mux.HandleFunc("POST /"+ctlCPUStop, p.cpuStop)
	mux.HandleFunc("POST /"+ctlHeap, p.heap)
	mux.HandleFunc("POST /"+ctlMemStats, p.memStats)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	return mux
}

func (p *profiler) file(kind string, r *http.Request) (*os.File, error) {
	name := r.URL.Query().Get("name")
	if !profileName.MatchString(name) {
		return nil, fmt.Errorf("profile name %q: use lower-case letters, digits and dashes", name)
	}
	return os.Create(filepath.Join(p.dir, kind+"-"+name+".pprof"))
}

func (p *profiler) cpuStart(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cpu != nil {
		http.Error(w, "a cpu profile is running already", http.StatusConflict)
		return
	}
	f, err := p.file("cpu", r)
	if err == nil {
		if err = rpprof.StartCPUProfile(f); err != nil {
			f.Close()
		}
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	p.cpu = f
}

func (p *profiler) cpuStop(w http.ResponseWriter, _ *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cpu == nil {
		http.Error(w, "no cpu profile is running", http.StatusConflict)
		return
	}
	rpprof.StopCPUProfile()
	if err := p.cpu.Close(); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
	p.cpu = nil
}

func (p *profiler) heap(w http.ResponseWriter, r *http.Request) {
	runtime.GC()
	var errs []error
	for _, kind := range []string{"heap", "goroutine"} {
		f, err := p.file(kind, r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		errs = append(errs, rpprof.Lookup(kind).WriteTo(f, 0), f.Close())
	}
	if err := errors.Join(errs...); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// memStats reports the live heap (after a GC), stacks and goroutines.
func (p *profiler) memStats(w http.ResponseWriter, _ *http.Request) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m := runtimeMem{
		HeapInuse: ms.HeapInuse, StackInuse: ms.StackInuse, Sys: ms.Sys,
		HeapObjects: ms.HeapObjects, NumGoroutine: runtime.NumGoroutine(),
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(m)
}
