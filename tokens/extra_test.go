package tokens

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/testidp"
)

// lockedBuffer is a bytes.Buffer for a logger shared by goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLogsHoldNoTokens: refreshes that succeed and fail log at debug level
// without any token.
func TestLogsHoldNoTokens(t *testing.T) {
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f := newFixture(t, time.Now().Add(-time.Minute), Options{Logger: log})
	old := mustGet(t, f.store, alice)
	tok, err := f.m.Token(ctxT(t), alice)
	if err != nil {
		t.Fatal(err)
	}
	rec := mustGet(t, f.store, alice)
	f.idp.FailWith(testidp.Failure{Status: 500})
	f.m.Refresh(ctxT(t), alice, tok)
	f.idp.ClearFailure()
	f.clock.Advance(time.Hour)
	f.idp.RevokeUser(alice)
	f.m.Token(ctxT(t), alice)
	out := logs.String()
	if !strings.Contains(out, "token refreshed") || !strings.Contains(out, "token refresh failed") {
		t.Fatalf("expected log lines missing:\n%s", out)
	}
	for _, secret := range []string{old.RefreshToken, rec.RefreshToken, tok, old.AccessToken} {
		if secret != "" && strings.Contains(out, secret) {
			t.Fatalf("log contains a token:\n%s", out)
		}
	}
}

// TestProgressTerminal: on a terminal the countdown line is rewritten in
// place and messages go above it.
func TestProgressTerminal(t *testing.T) {
	var buf bytes.Buffer
	p := &progress{w: &buf, tty: true}
	p.setStatus("Waiting... 1:00 left")
	p.println("slow down %d", 6)
	p.setStatus("Waiting... 0:59 left")
	want := "\r\033[KWaiting... 1:00 left" + "\r\033[Kslow down 6\nWaiting... 1:00 left" + "\r\033[KWaiting... 0:59 left"
	if buf.String() != want {
		t.Fatalf("terminal output %q, want %q", buf.String(), want)
	}
	var plain bytes.Buffer
	q := newProgress(&plain)
	stop := q.countdown(time.Now().Add(time.Hour))
	q.println("hello")
	stop()
	if plain.String() != "hello\n" {
		t.Fatalf("plain output %q", plain.String())
	}
}

// FuzzCallback sends arbitrary redirect queries to the loopback handler:
// it never panics, delivers at most one result, and a result with a code
// always carries the right state.
func FuzzCallback(f *testing.F) {
	f.Add("code=abc&state=s3cret")
	f.Add("code=abc&state=wrong")
	f.Add("error=access_denied&error_description=AADSTS65004:+declined&state=s3cret")
	f.Add("")
	f.Add("state=s3cret")
	f.Add("%zz")
	p := &provider{name: "m365"}
	f.Fuzz(func(t *testing.T, query string) {
		results := make(chan callback, 1)
		h := callbackHandler("s3cret", p, "a@b", results)
		req := httptest.NewRequest(http.MethodGet, "http://localhost/", nil)
		req.URL.RawQuery = query
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		select {
		case cb := <-results:
			if cb.code != "" && (cb.err != nil || req.URL.Query().Get("state") != "s3cret") {
				t.Fatalf("code delivered for query %q", query)
			}
			if cb.code == "" && cb.err == nil {
				t.Fatalf("empty result for query %q", query)
			}
		default:
			if rec.Code != http.StatusNotFound {
				t.Fatalf("no result but status %d for %q", rec.Code, query)
			}
		}
	})
}
