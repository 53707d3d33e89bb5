package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// adminStub is an httptest admin endpoint: /healthz and /readyz answer with
// the configured status and body; it records the paths it was asked for.
type adminStub struct {
	srv   *httptest.Server
	paths chan string
}

func newAdminStub(t *testing.T, h http.HandlerFunc) *adminStub {
	t.Helper()
	a := &adminStub{paths: make(chan string, 16)}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case a.paths <- r.URL.Path:
		default:
		}
		h(w, r)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// answer returns a handler that answers status and body on path and 404
// elsewhere.
func answer(path string, status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
}

func TestHealthAnswers(t *testing.T) {
	tests := []struct {
		name       string
		handler    http.HandlerFunc
		args       []string
		wantCode   int
		wantOut    string // substring of stdout ("" : stdout must be empty)
		wantErr    string // substring of stderr ("" : stderr must be empty)
		wantPath   string
		notInLines int // stderr must have at most this many lines (0: no check)
	}{
		{name: "healthz 200", handler: answer("/healthz", 200, "ok\n"),
			wantCode: exitOK, wantOut: "ok", wantPath: "/healthz"},
		{name: "healthz 503", handler: answer("/healthz", 503, "shutting down\nmore detail\n"),
			wantCode: exitFailure, wantErr: "answered 503 Service Unavailable: shutting down", wantPath: "/healthz", notInLines: 1},
		{name: "healthz 500 empty body", handler: answer("/healthz", 500, ""),
			wantCode: exitFailure, wantErr: "answered 500 Internal Server Error\n", wantPath: "/healthz"},
		{name: "readyz 200 prints body", handler: answer("/readyz", 200, "ready: 3 listeners\n"), args: []string{"--ready"},
			wantCode: exitOK, wantOut: "ready: 3 listeners", wantPath: "/readyz"},
		{name: "readyz 503 prints reasons", handler: answer("/readyz", 503, "not ready:\n- store: permission denied\n- identity a@b.example needs a new login\n"),
			args: []string{"--ready"}, wantCode: exitFailure, wantOut: "identity a@b.example needs a new login",
			wantErr: "/readyz answered 503 Service Unavailable\n", wantPath: "/readyz"},
		{name: "redirect not followed", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		}, wantCode: exitFailure, wantErr: "answered 302 Found", wantPath: "/healthz"},
		{name: "control characters neutralized", handler: answer("/healthz", 503, "bad\x1b[2Jthing"),
			wantCode: exitFailure, wantErr: "bad?[2Jthing", wantPath: "/healthz"},
		{name: "long body bounded", handler: answer("/healthz", 200, strings.Repeat("x", 3*maxHealthBody)),
			wantCode: exitOK, wantOut: strings.Repeat("x", 100), wantPath: "/healthz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAdminStub(t, tt.handler)
			args := append([]string{"health", "--url", a.srv.URL}, tt.args...)
			code, out, errOut := runIn(t, "", args...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.wantCode, errOut)
			}
			if tt.wantOut == "" && out != "" || !strings.Contains(out, tt.wantOut) {
				t.Errorf("stdout = %.200q, want %q", out, tt.wantOut)
			}
			if len(out) > maxHealthBody+1 {
				t.Errorf("stdout has %d bytes, more than maxHealthBody", len(out))
			}
			if tt.wantErr == "" && errOut != "" || !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("stderr = %q, want %q", errOut, tt.wantErr)
			}
			if tt.notInLines > 0 && strings.Count(errOut, "\n") > tt.notInLines {
				t.Errorf("stderr has more than %d line(s): %q", tt.notInLines, errOut)
			}
			if got := <-a.paths; got != tt.wantPath {
				t.Errorf("asked for %s, want %s", got, tt.wantPath)
			}
		})
	}
}

func TestHealthConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	code, out, errOut := runIn(t, "", "health", "--url", "http://"+addr)
	if code != exitFailure || out != "" {
		t.Errorf("exit %d, stdout %q; want 1 and nothing", code, out)
	}
	if !strings.Contains(errOut, "cannot reach http://"+addr+"/healthz") || !strings.Contains(errOut, "admin.listen") {
		t.Errorf("stderr = %q, want the address and a hint", errOut)
	}
}

func TestHealthTimeout(t *testing.T) {
	tests := []struct {
		name    string
		handler func(w http.ResponseWriter, release <-chan struct{})
		want    string
	}{
		{"no headers", func(_ http.ResponseWriter, release <-chan struct{}) { <-release }, "no answer from"},
		{"body never ends", func(w http.ResponseWriter, release <-chan struct{}) {
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("o"))
			w.(http.Flusher).Flush()
			<-release
		}, "no complete answer from"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release := make(chan struct{})
			a := newAdminStub(t, func(w http.ResponseWriter, _ *http.Request) { tt.handler(w, release) })
			// Registered after the stub, so it runs before the stub's Close,
			// which waits for the handler.
			t.Cleanup(func() { close(release) })
			code, _, errOut := runIn(t, "", "health", "--url", a.srv.URL, "--timeout", "50ms")
			if code != exitFailure || !strings.Contains(errOut, tt.want) || !strings.Contains(errOut, "50ms") {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, errOut, tt.want)
			}
		})
	}
}

// writeConfig writes a configuration file into a temporary directory.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "xoauthd.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestHealthFromConfig(t *testing.T) {
	a := newAdminStub(t, answer("/healthz", 200, "ok"))
	_, port, _ := net.SplitHostPort(a.srv.Listener.Addr().String())
	for _, listen := range []string{"127.0.0.1:" + port, "0.0.0.0:" + port, ":" + port} {
		t.Run(listen, func(t *testing.T) {
			// Everything but admin.listen is wrong on purpose: health reads
			// only that key.
			path := writeConfig(t, "admin:\n  listen: \""+listen+"\"\nbogus: [1, 2]\nservers: 7\nservers: 8\n")
			code, out, errOut := runIn(t, "", "health", "--config", path)
			if code != exitOK || strings.TrimSpace(out) != "ok" || errOut != "" {
				t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
			}
		})
	}
	t.Run("XOAUTHD_CONFIG", func(t *testing.T) {
		t.Setenv("XOAUTHD_CONFIG", writeConfig(t, "admin: {listen: 127.0.0.1:"+port+"}\n"))
		if code, _, errOut := runIn(t, "", "health"); code != exitOK {
			t.Errorf("exit %d, stderr %q", code, errOut)
		}
	})
}

func TestHealthConfigProblems(t *testing.T) {
	tests := []struct {
		name    string
		content string // "" : no file
		want    string
	}{
		{"missing file", "", "pass --config FILE, or --url"},
		{"admin off", "log: {level: info}\n", "the admin endpoint is off"},
		{"admin empty", "admin: {}\n", "the admin endpoint is off"},
		{"admin not a mapping", "admin: 127.0.0.1:9925\n", "the admin endpoint is off"},
		{"listen not a scalar", "admin: {listen: [a, b]}\n", "the admin endpoint is off"},
		{"not a mapping", "- a\n- b\n", "the admin endpoint is off"},
		{"empty file", "\n", "the admin endpoint is off"},
		{"yaml syntax", "admin: [listen\n", "pass --url"},
		{"not host:port", "admin: {listen: localhost}\n", "is not host:port"},
		{"port zero", "admin: {listen: 127.0.0.1:0}\n", "has no fixed port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "absent.yaml")
			if tt.content != "" {
				path = writeConfig(t, tt.content)
			}
			code, out, errOut := runIn(t, "", "health", "--config", path)
			if code != exitFailure || out != "" || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want 1 and %q", code, out, errOut, tt.want)
			}
			if strings.Count(errOut, "\n") != 1 {
				t.Errorf("stderr %q: want one line", errOut)
			}
		})
	}
}

func TestHealthUsage(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"health", "--url", "ftp://127.0.0.1:9925"}, `scheme "ftp"`},
		{[]string{"health", "--url", "http://"}, "has no host"},
		{[]string{"health", "--url", "http://[::1"}, "is not a URL"},
		{[]string{"health", "--timeout", "0s", "--url", "127.0.0.1:1"}, "--timeout must be positive"},
		{[]string{"health", "extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		code, _, errOut := runIn(t, "", tt.args...)
		if code != exitUsage || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tt.args, code, errOut, tt.want)
		}
	}
}

func TestAdminBaseURL(t *testing.T) {
	tests := []struct{ listen, want string }{
		{"127.0.0.1:9925", "http://127.0.0.1:9925"},
		{"0.0.0.0:9925", "http://127.0.0.1:9925"},
		{":9925", "http://127.0.0.1:9925"},
		{"[::]:9925", "http://[::1]:9925"},
		{"[::1]:9925", "http://[::1]:9925"},
		{"localhost:9925", "http://localhost:9925"},
		{"10.1.2.3:80", "http://10.1.2.3:80"},
		{"9925", ""},
		{"127.0.0.1:", ""},
		{"127.0.0.1:0", ""},
	}
	for _, tt := range tests {
		got, err := adminBaseURL(tt.listen)
		if got != tt.want || (err != nil) != (tt.want == "") {
			t.Errorf("adminBaseURL(%q) = %q, %v; want %q", tt.listen, got, err, tt.want)
		}
	}
}

func TestHealthTarget(t *testing.T) {
	tests := []struct{ base, endpoint, want string }{
		{"http://127.0.0.1:9925", "/healthz", "http://127.0.0.1:9925/healthz"},
		{"http://127.0.0.1:9925/", "/readyz", "http://127.0.0.1:9925/readyz"},
		{"127.0.0.1:9925", "/healthz", "http://127.0.0.1:9925/healthz"},
		{"https://proxy.example/xoauthd/", "/readyz", "https://proxy.example/xoauthd/readyz"},
		{"http://127.0.0.1:9925/?q=1#f", "/healthz", "http://127.0.0.1:9925/healthz"},
		{"127.0.0.1:9925?", "/healthz", "http://127.0.0.1:9925/healthz"},
		{"ftp://h", "/healthz", ""},
		{"http://", "/healthz", ""},
		{"http://%zz", "/healthz", ""},
	}
	for _, tt := range tests {
		got, err := healthTarget(tt.base, tt.endpoint)
		if got != tt.want || (err != nil) != (tt.want == "") {
			t.Errorf("healthTarget(%q, %q) = %q, %v; want %q", tt.base, tt.endpoint, got, err, tt.want)
		}
	}
}

func TestFirstLine(t *testing.T) {
	long := strings.Repeat("é", maxReasonLen+5)
	tests := []struct{ in, want string }{
		{"", ""},
		{"\n  \nsecond\nthird", "second"},
		{"one", "one"},
		{long, strings.Repeat("é", maxReasonLen) + "…"},
	}
	for _, tt := range tests {
		if got := firstLine(tt.in); got != tt.want {
			t.Errorf("firstLine(%.20q) = %.20q, want %.20q", tt.in, got, tt.want)
		}
	}
}

// FuzzHealthTarget checks that any --url gives an error or an http(s) URL
// ending in the endpoint.
func FuzzHealthTarget(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:9925", "127.0.0.1:9925", "https://h/p/", "ftp://x", "http://", "://", "%", "http://[::1]:1/a?b#c", "0?"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, base string) {
		got, err := healthTarget(base, "/readyz")
		if err != nil {
			return
		}
		if !strings.HasPrefix(got, "http://") && !strings.HasPrefix(got, "https://") || !strings.HasSuffix(got, "/readyz") {
			t.Errorf("healthTarget(%q) = %q", base, got)
		}
	})
}
