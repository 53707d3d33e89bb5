// Package admin serves xoauthd's admin endpoint over HTTP: /healthz (the
// process is alive), /readyz (it can serve: 503 with one reason per line
// when not) and /metrics (Prometheus). It is off unless admin.listen is
// set, and is meant for loopback or a pod network: it has no
// authentication, so a listen address beyond this machine is warned about.
// Only GET and HEAD are answered. Every other path goes to the console
// (package console), which has its own sign-in, when one is given.
package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

// Timeouts and bounds of the HTTP server: a probe or a scraper that stalls
// cannot hold a connection.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 16 << 10
	// readyTimeout bounds one readiness check.
	readyTimeout = 5 * time.Second
)

// Readiness is the answer of /readyz.
type Readiness struct {
	// Problems each make the process not ready: /readyz answers 503 with
	// one problem per line. Empty: ready.
	Problems []string
	// Notes are shown after the status line, each prefixed "note: ", without
	// making the process unready (an identity that needs a new login: the
	// other identities are still served).
	Notes []string
}

// Options configure a Server.
type Options struct {
	// Listen is the host:port to listen on (admin.listen).
	Listen string
	// Log receives the start, the warning for a non-loopback address and
	// server errors; nil: slog.Default().
	Log *slog.Logger
	// Metrics serves /metrics; nil: /metrics is 404.
	Metrics http.Handler
	// Ready reports readiness for /readyz; nil: always ready.
	Ready func(ctx context.Context) Readiness
	// Console serves every other path (the browser console, which has its
	// own sign-in); nil: they are 404.
	Console http.Handler
}

// Server is the admin HTTP server.
type Server struct {
	opts Options
	log  *slog.Logger
	srv  *http.Server
	ln   net.Listener  // set by Start
	done chan struct{} // closed when Serve has returned; set by Start
}

// New returns a Server for opts; it listens on nothing until Start.
func New(opts Options) *Server {
	s := &Server{opts: opts, log: opts.Log}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	return s
}

// Handler returns the admin routes, for tests and for embedding.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeText(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	if s.opts.Metrics != nil {
		mux.Handle("GET /metrics", s.opts.Metrics)
	}
	if s.opts.Console != nil {
		mux.Handle("/", s.opts.Console)
	}
	return mux
}

// readyz answers 200 "ready" or 503 with the problems, one per line, and
// the notes in both cases.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	var rd Readiness
	if s.opts.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		rd = s.opts.Ready(ctx)
		cancel()
	}
	var b strings.Builder
	code := http.StatusOK
	if len(rd.Problems) == 0 {
		b.WriteString("ready\n")
	} else {
		code = http.StatusServiceUnavailable
		for _, p := range rd.Problems {
			b.WriteString(oneLine(p) + "\n")
		}
	}
	for _, n := range rd.Notes {
		b.WriteString("note: " + oneLine(n) + "\n")
	}
	writeText(w, code, b.String())
}

// oneLine keeps a reason on its line.
func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", " ") }

func writeText(w http.ResponseWriter, code int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

// Start listens on Options.Listen and serves in the background until
// Shutdown or ctx is done. A listen address that is not loopback is logged
// as a warning: the endpoint has no authentication.
func (s *Server) Start(ctx context.Context) error {
	lc := net.ListenConfig{}
	ln, err := lc.Listen(ctx, "tcp", s.opts.Listen)
	if err != nil {
		return fmt.Errorf("starting the admin endpoint on %s: %w (hint: check admin.listen, or leave it empty to turn the endpoint off)", s.opts.Listen, err)
	}
	s.ln = ln
	s.done = make(chan struct{})
	if !isLoopback(s.opts.Listen) {
		s.log.Warn("the admin endpoint listens beyond this machine and has no authentication: "+
			"/metrics names identities and /readyz their state; restrict who can reach it (firewall, network policy) or listen on 127.0.0.1",
			"addr", ln.Addr().String())
	}
	s.log.Info("admin endpoint listening", "addr", ln.Addr().String(), "paths", "/healthz /readyz /metrics")
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin endpoint stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	stop := context.AfterFunc(ctx, func() { _ = s.srv.Close() })
	go func() {
		<-s.done
		stop()
	}()
	return nil
}

// Addr returns the address the server listens on ("" before Start).
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Shutdown stops the server: it stops accepting, lets requests in progress
// finish until ctx is done and then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.ln == nil {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, s.srv.Close())
	}
	<-s.done
	if err != nil {
		return fmt.Errorf("stopping the admin endpoint: %w", err)
	}
	return nil
}

// isLoopback reports whether a listen address is on a loopback interface
// only ("localhost" counts; an empty host means every interface).
func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
