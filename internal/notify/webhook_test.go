package notify

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// hookServer is a webhook on loopback answering with statuses in turn
// (the last one repeats), or hanging when hang is set.
type hookServer struct {
	*httptest.Server
	calls    atomic.Int32
	bodies   chan []byte
	headers  chan http.Header
	statuses []int
	hang     chan struct{} // when not nil, requests wait for it or their end
}

func newHookServer(t *testing.T, statuses ...int) *hookServer {
	t.Helper()
	h := &hookServer{bodies: make(chan []byte, 10), headers: make(chan http.Header, 10), statuses: statuses}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(h.calls.Add(1)) - 1
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		h.bodies <- body
		h.headers <- r.Header.Clone()
		if h.hang != nil {
			select {
			case <-h.hang:
			case <-r.Context().Done():
			}
			return
		}
		status := http.StatusNoContent
		if len(h.statuses) > 0 {
			status = h.statuses[min(i, len(h.statuses)-1)]
		}
		if status >= 300 && status < 400 {
			w.Header().Set("Location", "http://example.com/elsewhere")
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(h.Close)
	return h
}

// TestWebhook: one POST with the alert as JSON.
func TestWebhook(t *testing.T) {
	h := newHookServer(t)
	r := newRig(t, Hooks{Webhook: h.URL + "/xoauthd?token=hook-secret"}, nil)
	a := sample("billing@contoso.com")
	r.n.Report(a)
	r.delivered(t, HookWebhook, DeliverySuccess)
	checkAlertJSON(t, "the webhook's body", <-h.bodies, a)
	if hdr := <-h.headers; hdr.Get("Content-Type") != "application/json" {
		t.Errorf("Content-Type %q", hdr.Get("Content-Type"))
	}
	if n := h.calls.Load(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
	if strings.Contains(r.log.String(), "hook-secret") {
		t.Errorf("the log shows the webhook URL:\n%s", r.log)
	}
}

func TestWebhookRetries(t *testing.T) {
	for _, tc := range []struct {
		name     string
		statuses []int
		result   string
		calls    int32
		log      string
	}{
		{name: "503 then ok", statuses: []int{503, 200}, result: DeliverySuccess, calls: 2},
		{name: "429 twice then ok", statuses: []int{429, 429, 202}, result: DeliverySuccess, calls: 3},
		{name: "always 500", statuses: []int{500}, result: DeliveryFailure, calls: 3, log: "answered 500 Internal Server Error (after 3 attempts)"},
		{name: "404 is final", statuses: []int{404}, result: DeliveryFailure, calls: 1, log: "answered 404 Not Found; check notify.webhook"},
		{name: "redirect not followed", statuses: []int{302}, result: DeliveryFailure, calls: 1, log: "redirects are not followed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHookServer(t, tc.statuses...)
			r := newRig(t, Hooks{Webhook: h.URL + "/hook/secret-path"}, nil)
			r.n.Report(sample("billing@contoso.com"))
			r.delivered(t, HookWebhook, tc.result)
			if n := h.calls.Load(); n != tc.calls {
				t.Errorf("%d requests, want %d", n, tc.calls)
			}
			log := r.log.String()
			if tc.log != "" && !strings.Contains(log, tc.log) {
				t.Errorf("log lacks %q:\n%s", tc.log, log)
			}
			if strings.Contains(log, "secret-path") {
				t.Errorf("the log shows the webhook URL:\n%s", log)
			}
		})
	}
}

// TestWebhookHangs: a webhook that never answers costs each attempt its
// timeout, is reported as failed, and never holds up Report.
func TestWebhookHangs(t *testing.T) {
	h := newHookServer(t)
	h.hang = make(chan struct{})
	defer close(h.hang)
	r := newRig(t, Hooks{Webhook: h.URL + "/hook/secret-path", Timeout: 100 * time.Millisecond}, nil)
	reported := make(chan bool)
	go func() { reported <- r.n.Report(sample("billing@contoso.com")) }()
	select {
	case ok := <-reported:
		if !ok {
			t.Fatal("not a new alert")
		}
	case <-time.After(waitFor):
		t.Fatal("Report blocked on a hanging webhook")
	}
	r.delivered(t, HookWebhook, DeliveryFailure)
	if n := h.calls.Load(); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}
	log := r.log.String()
	if !strings.Contains(log, "no answer within 100ms (after 3 attempts)") || strings.Contains(log, "secret-path") {
		t.Errorf("log:\n%s", log)
	}
}

// TestWebhookAndCommand: both hooks run for one alert; a broken webhook
// address fails without a request.
func TestWebhookAndCommand(t *testing.T) {
	r := newRig(t, Hooks{Command: helperCommand(t, "fail"), Webhook: "http://hooks.example.com/x"},
		func(o *Options) { o.Retries = -1 })
	r.n.Report(sample("billing@contoso.com"))
	r.delivered(t, HookCommand, DeliveryFailure)
	r.delivered(t, HookWebhook, DeliveryFailure)
	if !strings.Contains(r.log.String(), "must use https") {
		t.Errorf("log:\n%s", r.log)
	}
}

func TestWebhookURL(t *testing.T) {
	for raw, ok := range map[string]bool{
		"https://hooks.example.com/x":      true,
		"http://127.0.0.1:9/x":             true,
		"http://[::1]/x":                   true,
		"http://LOCALHOST/x":               true,
		"http://hooks.example.com/x":       false,
		"hooks.example.com/x":              false,
		"ftp://hooks.example.com/x":        false,
		"https://hooks.example.com/%zzkey": false,
	} {
		_, err := webhookURL(raw)
		if (err == nil) != ok {
			t.Errorf("webhookURL(%q) = %v", raw, err)
		}
		if err != nil && strings.Contains(err.Error(), "/x") {
			t.Errorf("error repeats the URL: %v", err)
		}
	}
}
