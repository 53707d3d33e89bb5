package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/xoauthd/xoauthd/proxy"
)

// value returns the value of the series name{labels} (counter, gauge, or a
// histogram's sample count), and whether it exists.
func value(t *testing.T, m *Metrics, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("gathering: %v", err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.GetMetric() {
			if !hasLabels(s, labels) {
				continue
			}
			switch {
			case s.Counter != nil:
				return s.Counter.GetValue(), true
			case s.Gauge != nil:
				return s.Gauge.GetValue(), true
			case s.Histogram != nil:
				return float64(s.Histogram.GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func hasLabels(s *dto.Metric, want map[string]string) bool {
	got := map[string]string{}
	for _, l := range s.GetLabel() {
		got[l.GetName()] = l.GetValue()
	}
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

func mustValue(t *testing.T, m *Metrics, name string, labels map[string]string, want float64) {
	t.Helper()
	got, ok := value(t, m, name, labels)
	if !ok {
		t.Errorf("%s%v does not exist", name, labels)
		return
	}
	if got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

type L = map[string]string

func TestSeriesExistAtZero(t *testing.T) {
	m := New("imap", "pop3")
	for _, tt := range []struct {
		name   string
		labels L
	}{
		{"xoauthd_connections_open", L{"protocol": "imap"}},
		{"xoauthd_connections_total", L{"protocol": "pop3"}},
		{"xoauthd_connections_refused_total", L{"protocol": "imap"}},
		{"xoauthd_logins_total", L{"protocol": "pop3", "result": "error"}},
		{"xoauthd_logins_throttled_total", L{"protocol": "imap"}},
		{"xoauthd_relayed_bytes_total", L{"protocol": "imap", "direction": "upstream_to_client"}},
		{"xoauthd_upstream_dial_duration_seconds", L{"protocol": "pop3"}},
		{"xoauthd_upstream_auth_duration_seconds", L{"protocol": "imap"}},
		{"xoauthd_config_reloads_total", L{"result": "failure"}},
	} {
		mustValue(t, m, tt.name, tt.labels, 0)
	}
	if _, ok := value(t, m, "xoauthd_connections_open", L{"protocol": "smtp"}); ok {
		t.Error("a protocol that was not asked for has series")
	}
}

func TestProxyEvents(t *testing.T) {
	m := New("imap")
	var pm proxy.Metrics = m
	pm.ConnOpened("imap")
	pm.ConnOpened("imap")
	pm.ConnClosed("imap")
	pm.ConnRefused("imap")
	pm.Login("imap", proxy.LoginSuccess)
	pm.Login("imap", proxy.LoginFailure)
	pm.Login("imap", proxy.LoginFailure)
	pm.Throttled("imap")
	pm.Relayed("imap", proxy.ClientToUpstream, 10)
	pm.Relayed("imap", proxy.ClientToUpstream, 5)
	pm.Relayed("imap", proxy.UpstreamToClient, 1000)
	pm.UpstreamDialed("imap", 3*time.Millisecond)
	pm.UpstreamAuthenticated("imap", 200*time.Millisecond)
	pm.UpstreamAuthenticated("imap", 2*time.Second)
	m.ConfigReloaded("success")
	mustValue(t, m, "xoauthd_connections_open", L{"protocol": "imap"}, 1)
	mustValue(t, m, "xoauthd_connections_total", L{"protocol": "imap"}, 2)
	mustValue(t, m, "xoauthd_connections_refused_total", L{"protocol": "imap"}, 1)
	mustValue(t, m, "xoauthd_logins_total", L{"protocol": "imap", "result": "success"}, 1)
	mustValue(t, m, "xoauthd_logins_total", L{"protocol": "imap", "result": "failure"}, 2)
	mustValue(t, m, "xoauthd_logins_throttled_total", L{"protocol": "imap"}, 1)
	mustValue(t, m, "xoauthd_relayed_bytes_total", L{"protocol": "imap", "direction": "client_to_upstream"}, 15)
	mustValue(t, m, "xoauthd_relayed_bytes_total", L{"protocol": "imap", "direction": "upstream_to_client"}, 1000)
	mustValue(t, m, "xoauthd_upstream_dial_duration_seconds", L{"protocol": "imap"}, 1)
	mustValue(t, m, "xoauthd_upstream_auth_duration_seconds", L{"protocol": "imap"}, 2)
	mustValue(t, m, "xoauthd_config_reloads_total", L{"result": "success"}, 1)
}

func TestTokenMetrics(t *testing.T) {
	m := New()
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	app := time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)
	m.SetIdentities(func() []IdentityState {
		return []IdentityState{
			{Identity: "Alice@contoso.com", Expiry: exp},
			{Identity: "bob@contoso.com", NeedsLogin: true},
			{Identity: "app@contoso.com"},                // client credentials: nothing stored
			{Identity: "alice@contoso.com", Expiry: app}, // a second account of alice: reported once
		}
	})
	m.TokenRefreshed("Alice@contoso.com", RefreshSuccess, exp)
	m.TokenRefreshed("bob@contoso.com", RefreshNeedsLogin, time.Time{})
	m.TokenRefreshed("app@contoso.com", RefreshSuccess, app)
	m.TokenRefreshed("gone@contoso.com", RefreshSuccess, app) // no longer configured
	m.TokenRefreshed("bob@contoso.com", RefreshError, time.Time{})

	mustValue(t, m, "xoauthd_token_refreshes_total", L{"identity": "Alice@contoso.com", "result": "success"}, 1)
	mustValue(t, m, "xoauthd_token_refreshes_total", L{"identity": "bob@contoso.com", "result": "needs_login"}, 1)
	mustValue(t, m, "xoauthd_token_refreshes_total", L{"identity": "bob@contoso.com", "result": "error"}, 1)
	mustValue(t, m, "xoauthd_token_expiry_timestamp_seconds", L{"identity": "Alice@contoso.com"}, float64(exp.Unix()))
	mustValue(t, m, "xoauthd_token_expiry_timestamp_seconds", L{"identity": "app@contoso.com"}, float64(app.Unix()))
	mustValue(t, m, "xoauthd_token_expiry_timestamp_seconds", L{"identity": "gone@contoso.com"}, float64(app.Unix()))
	if _, ok := value(t, m, "xoauthd_token_expiry_timestamp_seconds", L{"identity": "bob@contoso.com"}); ok {
		t.Error("an identity without a token has an expiry")
	}
	mustValue(t, m, "xoauthd_identity_needs_login", L{"identity": "bob@contoso.com"}, 1)
	mustValue(t, m, "xoauthd_identity_needs_login", L{"identity": "Alice@contoso.com"}, 0)
	mustValue(t, m, "xoauthd_identity_needs_login", L{"identity": "app@contoso.com"}, 0)
}

func TestHandler(t *testing.T) {
	m := New("smtp")
	m.Login("smtp", proxy.LoginError)
	srv := httptest.NewServer(m.Handler(nil))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	text := string(body)
	for _, want := range []string{
		`xoauthd_logins_total{protocol="smtp",result="error"} 1`,
		"# HELP xoauthd_connections_open ",
		"# TYPE xoauthd_upstream_dial_duration_seconds histogram",
		"go_goroutines ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// Two daemons in one process count apart: nothing is global.
func TestRegistriesAreSeparate(t *testing.T) {
	a, b := New("imap"), New("imap")
	a.Login("imap", proxy.LoginSuccess)
	mustValue(t, a, "xoauthd_logins_total", L{"protocol": "imap", "result": "success"}, 1)
	mustValue(t, b, "xoauthd_logins_total", L{"protocol": "imap", "result": "success"}, 0)
}

func BenchmarkRelayed(b *testing.B) {
	m := New("imap")
	b.ReportAllocs()
	for b.Loop() {
		m.Relayed("imap", proxy.ClientToUpstream, 32<<10)
	}
}

func TestKeepaliveAlertAndNotifyMetrics(t *testing.T) {
	m := New()
	m.Keepalive("alice@contoso.com", "refreshed")
	m.Keepalive("alice@contoso.com", "refreshed")
	m.Keepalive("bob@contoso.com", "needs_login")
	m.Alert("needs_login")
	m.NotifyDelivered("webhook", "success")
	m.NotifyDelivered("command", "failure")
	mustValue(t, m, "xoauthd_keepalive_refreshes_total", L{"identity": "alice@contoso.com", "result": "refreshed"}, 2)
	mustValue(t, m, "xoauthd_keepalive_refreshes_total", L{"identity": "bob@contoso.com", "result": "needs_login"}, 1)
	mustValue(t, m, "xoauthd_alerts_total", L{"kind": "needs_login"}, 1)
	mustValue(t, m, "xoauthd_notify_deliveries_total", L{"hook": "webhook", "result": "success"}, 1)
	mustValue(t, m, "xoauthd_notify_deliveries_total", L{"hook": "command", "result": "failure"}, 1)
}

func TestSendingLimitMetrics(t *testing.T) {
	m := New()
	m.SendDelayed("alice@contoso.com", 12*time.Second)
	m.SendDelayed("alice@contoso.com", 1500*time.Millisecond)
	m.SendRefused("alice@contoso.com", "limit")
	m.SendRefused("alice@contoso.com", "upstream")
	m.SendRefused("alice@contoso.com", "upstream")
	mustValue(t, m, "xoauthd_smtp_messages_delayed_total", L{"identity": "alice@contoso.com"}, 2)
	mustValue(t, m, "xoauthd_smtp_send_delay_seconds_total", L{"identity": "alice@contoso.com"}, 13.5)
	mustValue(t, m, "xoauthd_smtp_messages_refused_total", L{"identity": "alice@contoso.com", "reason": "limit"}, 1)
	mustValue(t, m, "xoauthd_smtp_messages_refused_total", L{"identity": "alice@contoso.com", "reason": "upstream"}, 2)
}
