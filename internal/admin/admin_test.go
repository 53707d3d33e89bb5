package admin

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/testkit"
)

// start runs a Server on a loopback port until the test ends.
func start(t *testing.T, opts Options) (*Server, *testkit.SyncBuffer) {
	t.Helper()
	logs := &testkit.SyncBuffer{}
	opts.Listen = "127.0.0.1:0"
	opts.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := New(opts)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s, logs
}

func get(t *testing.T, method, url string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body), resp.Header
}

func TestRoutes(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "xoauthd_up 1\n") })
	ready := func(ctx context.Context) Readiness {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("readiness check without a deadline")
		}
		return Readiness{Notes: []string{"identity bob@contoso.com needs a new login: run xoauthd login bob@contoso.com"}}
	}
	s, _ := start(t, Options{Metrics: metrics, Ready: ready})
	base := "http://" + s.Addr()
	tests := []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/healthz", 200, "ok\n"},
		{"HEAD", "/healthz", 200, ""},
		{"GET", "/readyz", 200, "ready\nnote: identity bob@contoso.com needs a new login: run xoauthd login bob@contoso.com\n"},
		{"GET", "/metrics", 200, "xoauthd_up 1\n"},
		{"POST", "/healthz", 405, ""},
		{"DELETE", "/readyz", 405, ""},
		{"GET", "/", 404, ""},
		{"GET", "/debug/pprof/", 404, ""},
	}
	for _, tt := range tests {
		code, body, h := get(t, tt.method, base+tt.path)
		if code != tt.code {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.path, code, tt.code)
		}
		if tt.body != "" && body != tt.body {
			t.Errorf("%s %s body = %q, want %q", tt.method, tt.path, body, tt.body)
		}
		if code == 200 && tt.path != "/metrics" && h.Get("Cache-Control") != "no-store" {
			t.Errorf("%s %s: Cache-Control %q, want no-store", tt.method, tt.path, h.Get("Cache-Control"))
		}
	}
}

func TestReadyzNotReady(t *testing.T) {
	ready := func(context.Context) Readiness {
		return Readiness{
			Problems: []string{"the imap listener on 127.0.0.1:1143 is not accepting connections", "token store: permission\ndenied"},
			Notes:    []string{"identity a@b needs a new login"},
		}
	}
	s, _ := start(t, Options{Ready: ready})
	code, body, _ := get(t, "GET", "http://"+s.Addr()+"/readyz")
	want := "the imap listener on 127.0.0.1:1143 is not accepting connections\ntoken store: permission denied\nnote: identity a@b needs a new login\n"
	if code != http.StatusServiceUnavailable || body != want {
		t.Errorf("/readyz = %d %q, want 503 %q", code, body, want)
	}
	// Without metrics, /metrics does not exist; without Ready, ready.
	s2, _ := start(t, Options{})
	if code, _, _ := get(t, "GET", "http://"+s2.Addr()+"/metrics"); code != 404 {
		t.Errorf("/metrics without a handler = %d, want 404", code)
	}
	if code, body, _ := get(t, "GET", "http://"+s2.Addr()+"/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("/readyz without a check = %d %q", code, body)
	}
}

func TestStartFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := New(Options{Listen: ln.Addr().String(), Log: slog.New(slog.DiscardHandler)})
	err = s.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "admin.listen") {
		t.Fatalf("Start on a busy port = %v, want an error naming admin.listen", err)
	}
	if err := s.Shutdown(context.Background()); err != nil || s.Addr() != "" {
		t.Errorf("Shutdown of a server that never started = %v, addr %q", err, s.Addr())
	}
}

func TestContextStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s := New(Options{Listen: "127.0.0.1:0", Log: slog.New(slog.DiscardHandler)})
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-s.done
	if _, err := net.Dial("tcp", s.Addr()); err == nil {
		t.Error("still accepting after the context ended")
	}
	if err := s.Shutdown(context.Background()); err != nil && !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Shutdown after the context ended: %v", err)
	}
}

// A client that never finishes its request header is disconnected.
func TestSlowHeaderIsCut(t *testing.T) {
	s := New(Options{Listen: "127.0.0.1:0", Log: slog.New(slog.DiscardHandler)})
	s.srv.ReadHeaderTimeout = 50 * time.Millisecond
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the server kept a connection with an unfinished header open")
	}
}

func TestIsLoopback(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:9925", true},
		{"127.1.2.3:9925", true},
		{"[::1]:9925", true},
		{"localhost:9925", true},
		{"LOCALHOST:9925", true},
		{":9925", false},
		{"0.0.0.0:9925", false},
		{"[::]:9925", false},
		{"10.0.0.5:9925", false},
		{"admin.example.com:9925", false},
		{"nonsense", false},
	}
	for _, tt := range tests {
		if got := isLoopback(tt.addr); got != tt.want {
			t.Errorf("isLoopback(%q) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

func TestStartLogs(t *testing.T) {
	_, logs := start(t, Options{})
	if out := logs.String(); !strings.Contains(out, "admin endpoint listening") || strings.Contains(out, "level=WARN") {
		t.Errorf("start on loopback logged:\n%s", out)
	}
}
