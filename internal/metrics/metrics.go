// Package metrics holds the Prometheus collectors of one xoauthd daemon in a
// registry of its own (no global default registry, no package state), so
// that two daemons in one process, as in tests, count apart.
//
// It is the only package that imports Prometheus. The proxy and the fronts
// report through proxy.Metrics, which *Metrics implements; the token
// manager through TokenRefreshed; configuration reloads through
// ConfigReloaded. Token expiry and "needs a new login" are read when
// /metrics is scraped, from a function the daemon provides (SetIdentities),
// so they are right even after another process (xoauthd login) changed the
// store.
//
// Series (all names start with xoauthd_):
//
//	connections_open{protocol}                  gauge
//	connections_total{protocol}                 counter
//	connections_refused_total{protocol}         counter: over max_connections
//	logins_total{protocol,result}               counter: success | failure | error
//	logins_throttled_total{protocol}            counter: refused after failed logins
//	logins_identity_limited_total{protocol}     counter: refused at max_upstream_per_identity
//	relayed_bytes_total{protocol,direction}     counter: client_to_upstream | upstream_to_client
//	upstream_dial_duration_seconds{protocol}    histogram: TCP connect (+ implicit TLS)
//	upstream_auth_duration_seconds{protocol}    histogram: greeting to logged in
//	token_refreshes_total{identity,result}      counter: success | needs_login | error
//	token_expiry_timestamp_seconds{identity}    gauge: access token expiry, unix time
//	identity_needs_login{identity}              gauge: 1 when a person must run xoauthd login
//	config_reloads_total{result}                counter: success | failure
//	keepalive_refreshes_total{identity,result}  counter: background refreshes of idle identities
//	alerts_total{kind}                          counter: needs_login | configuration, once per identity and cause
//	notify_deliveries_total{hook,result}        counter: command | webhook; success | failure | dropped
//
// plus the Go runtime and process collectors (go_*, process_*). Identity
// labels come from the configuration's accounts, so their number is bounded
// by it; no label carries a login a client typed.
package metrics

import (
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xoauthd/xoauthd/proxy"
)

// namespace prefixes every metric name.
const namespace = "xoauthd"

// Label values pre-created at New, so that rate() and alerts see zeros
// before the first event.
var (
	loginResults  = []string{proxy.LoginSuccess, proxy.LoginFailure, proxy.LoginError}
	directions    = []string{proxy.ClientToUpstream, proxy.UpstreamToClient}
	reloadResults = []string{"success", "failure"}
)

// Results of TokenRefreshed.
const (
	RefreshSuccess    = "success"     // a new access token
	RefreshNeedsLogin = "needs_login" // the provider refused the refresh token: a person must log in
	RefreshError      = "error"       // the provider was unreachable or refused the configuration
)

// Buckets of the upstream latency histograms, in seconds: from a local
// test upstream (milliseconds) to a slow provider near the timeouts (10 s
// dial, 60 s login).
var latencyBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// IdentityState is one configured identity's token state when /metrics is
// scraped.
type IdentityState struct {
	Identity   string
	Expiry     time.Time // of the stored access token; zero when unknown
	NeedsLogin bool      // no usable refresh token: run xoauthd login
}

// Metrics is one daemon's collectors and their registry. It implements
// proxy.Metrics; all methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	connsOpen    *prometheus.GaugeVec
	connsTotal   *prometheus.CounterVec
	connsRefused *prometheus.CounterVec
	logins       *prometheus.CounterVec
	throttled    *prometheus.CounterVec
	limited      *prometheus.CounterVec
	relayed      *prometheus.CounterVec
	dialSeconds  *prometheus.HistogramVec
	authSeconds  *prometheus.HistogramVec
	refreshes    *prometheus.CounterVec
	reloads      *prometheus.CounterVec
	keepalives   *prometheus.CounterVec
	alerts       *prometheus.CounterVec
	deliveries   *prometheus.CounterVec
	sendDelayed  *prometheus.CounterVec // SMTP messages held back by the sending limit (pacing.go)
	sendDelay    *prometheus.CounterVec
	sendRefused  *prometheus.CounterVec

	mu         sync.Mutex
	identities func() []IdentityState    // set by SetIdentities; nil: none
	refreshed  map[string]refreshedToken // lower-cased identity → from TokenRefreshed
}

// refreshedToken is the last successful TokenRefreshed of an identity.
type refreshedToken struct {
	identity string // as reported
	expiry   time.Time
}

var _ proxy.Metrics = (*Metrics)(nil)

// New returns the collectors in a new registry, with the series of each of
// protocols (and of every result and direction) created at zero.
func New(protocols ...string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), refreshed: map[string]refreshedToken{}}
	m.connsOpen = m.gaugeVec("connections_open", "Client connections being served.", "protocol")
	m.connsTotal = m.counterVec("connections_total", "Client connections accepted and served.", "protocol")
	m.connsRefused = m.counterVec("connections_refused_total", "Client connections refused because the listener was at max_connections.", "protocol")
	m.logins = m.counterVec("logins_total", "Login attempts by result: success, failure (refused: credentials, token, upstream rejection, throttling) or error (something was down).", "protocol", "result")
	m.throttled = m.counterVec("logins_throttled_total", "Logins refused without checking the password because of recent failures from the source or for the login.", "protocol")
	m.limited = m.counterVec("logins_identity_limited_total", "Logins refused because the identity had max_upstream_per_identity upstream sessions already.", "protocol")
	m.relayed = m.counterVec("relayed_bytes_total", "Bytes relayed after login, by direction.", "protocol", "direction")
	m.dialSeconds = m.histogramVec("upstream_dial_duration_seconds", "Time to connect to the upstream (TCP, plus the TLS handshake for implicit TLS), successful dials only.", "protocol")
	m.authSeconds = m.histogramVec("upstream_auth_duration_seconds", "Time from a connected upstream to a logged-in one (greeting, STARTTLS where used, XOAUTH2, checks), successful logins only.", "protocol")
	m.refreshes = m.counterVec("token_refreshes_total", "Requests to the identity provider for a new access token, by result: success, needs_login or error.", "identity", "result")
	m.reloads = m.counterVec("config_reloads_total", "Configuration reloads by result: success, or failure (the previous configuration stays in force).", "result")
	m.keepalives = m.counterVec("keepalive_refreshes_total", "Background refreshes of identities nobody used for a while, by result.", "identity", "result")
	m.alerts = m.counterVec("alerts_total", "Identities newly reported as needing a person (needs_login or configuration); each identity and cause once.", "kind")
	m.deliveries = m.counterVec("notify_deliveries_total", "Deliveries of alerts to the notify hooks, by hook (command, webhook) and result.", "hook", "result")
	m.sendDelayed = m.counterVec("smtp_messages_delayed_total", "SMTP messages whose MAIL waited for the identity's sending limit (send_rate).", "identity")
	m.sendDelay = m.counterVec("smtp_send_delay_seconds_total", "Seconds SMTP messages waited for the identity's sending limit, in all.", "identity")
	m.sendRefused = m.counterVec("smtp_messages_refused_total", "SMTP messages refused for now with 451 by a sending limit: reason limit (the wait would exceed its bound) or upstream (the upstream's rate-limit reply).", "identity", "reason")
	m.reg.MustRegister(identityCollector{m},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, p := range protocols {
		m.connsOpen.WithLabelValues(p)
		m.connsTotal.WithLabelValues(p)
		m.connsRefused.WithLabelValues(p)
		m.throttled.WithLabelValues(p)
		m.limited.WithLabelValues(p)
		m.dialSeconds.WithLabelValues(p)
		m.authSeconds.WithLabelValues(p)
		for _, r := range loginResults {
			m.logins.WithLabelValues(p, r)
		}
		for _, d := range directions {
			m.relayed.WithLabelValues(p, d)
		}
	}
	for _, r := range reloadResults {
		m.reloads.WithLabelValues(r)
	}
	return m
}

func (m *Metrics) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
	m.reg.MustRegister(v)
	return v
}

func (m *Metrics) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help}, labels)
	m.reg.MustRegister(v)
	return v
}

func (m *Metrics) histogramVec(name, help string, labels ...string) *prometheus.HistogramVec {
	v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help,
		Buckets: latencyBuckets}, labels)
	m.reg.MustRegister(v)
	return v
}

// Registry returns the daemon's registry, for tests and for more collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text (or negotiated)
// format. Collection errors are logged on log and answered with what could
// be gathered.
func (m *Metrics) Handler(log *slog.Logger) http.Handler {
	opts := promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, Registry: m.reg}
	if log != nil {
		opts.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	}
	return promhttp.HandlerFor(m.reg, opts)
}

// ConnOpened implements proxy.Metrics.
func (m *Metrics) ConnOpened(protocol string) {
	m.connsOpen.WithLabelValues(protocol).Inc()
	m.connsTotal.WithLabelValues(protocol).Inc()
}

// ConnClosed implements proxy.Metrics.
func (m *Metrics) ConnClosed(protocol string) { m.connsOpen.WithLabelValues(protocol).Dec() }

// ConnRefused implements proxy.Metrics.
func (m *Metrics) ConnRefused(protocol string) { m.connsRefused.WithLabelValues(protocol).Inc() }

// Login implements proxy.Metrics.
func (m *Metrics) Login(protocol, result string) { m.logins.WithLabelValues(protocol, result).Inc() }

// Throttled implements proxy.Metrics.
func (m *Metrics) Throttled(protocol string) { m.throttled.WithLabelValues(protocol).Inc() }

// IdentityLimited implements proxy.Metrics.
func (m *Metrics) IdentityLimited(protocol string) { m.limited.WithLabelValues(protocol).Inc() }

// UpstreamDialed implements proxy.Metrics.
func (m *Metrics) UpstreamDialed(protocol string, d time.Duration) {
	m.dialSeconds.WithLabelValues(protocol).Observe(d.Seconds())
}

// UpstreamAuthenticated implements proxy.Metrics.
func (m *Metrics) UpstreamAuthenticated(protocol string, d time.Duration) {
	m.authSeconds.WithLabelValues(protocol).Observe(d.Seconds())
}

// Relayed implements proxy.Metrics.
func (m *Metrics) Relayed(protocol, direction string, n int64) {
	m.relayed.WithLabelValues(protocol, direction).Add(float64(n))
}

// TokenRefreshed counts one request to the identity provider for identity's
// access token (a refresh, or a client-credentials grant) with its result,
// RefreshSuccess, RefreshNeedsLogin or RefreshError, and on success the new
// token's expiry. The expiry is shown for identities that SetIdentities
// does not report (client credentials keep no token in the store).
func (m *Metrics) TokenRefreshed(identity, result string, expiry time.Time) {
	m.refreshes.WithLabelValues(identity, result).Inc()
	if result != RefreshSuccess || expiry.IsZero() {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.refreshed[strings.ToLower(identity)] = refreshedToken{identity, expiry}
}

// ConfigReloaded counts a configuration reload with its result, "success"
// or "failure".
func (m *Metrics) ConfigReloaded(result string) { m.reloads.WithLabelValues(result).Inc() }

// SetIdentities sets the function that reports each configured identity's
// token state at every scrape (nil: none). It must be quick and safe for
// concurrent use.
func (m *Metrics) SetIdentities(f func() []IdentityState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.identities = f
}

// identityCollector reports token expiry and needs-login per identity at
// scrape time.
type identityCollector struct{ m *Metrics }

var (
	expiryDesc = prometheus.NewDesc(namespace+"_token_expiry_timestamp_seconds",
		"Expiry of the identity's current access token, in seconds since the Unix epoch.", []string{"identity"}, nil)
	needsLoginDesc = prometheus.NewDesc(namespace+"_identity_needs_login",
		"1 when the identity has no usable refresh token and a person must run xoauthd login for it, else 0.", []string{"identity"}, nil)
)

// Describe implements prometheus.Collector.
func (c identityCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- expiryDesc
	ch <- needsLoginDesc
}

// Collect implements prometheus.Collector.
func (c identityCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	f := c.m.identities
	extra := make(map[string]refreshedToken, len(c.m.refreshed))
	for key, rt := range c.m.refreshed {
		extra[key] = rt
	}
	c.m.mu.Unlock()
	var states []IdentityState
	if f != nil {
		states = f()
	}
	seen := make(map[string]bool, len(states))
	for _, st := range states {
		key := strings.ToLower(st.Identity)
		if seen[key] {
			continue
		}
		seen[key] = true
		exp := st.Expiry
		if exp.IsZero() {
			exp = extra[key].expiry
		}
		if !exp.IsZero() {
			ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, unixSeconds(exp), st.Identity)
		}
		needs := 0.0
		if st.NeedsLogin {
			needs = 1
		}
		ch <- prometheus.MustNewConstMetric(needsLoginDesc, prometheus.GaugeValue, needs, st.Identity)
	}
	for key, rt := range extra {
		if !seen[key] {
			ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, unixSeconds(rt.expiry), rt.identity)
		}
	}
}

// unixSeconds returns t as fractional seconds since the Unix epoch.
func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// Keepalive counts one background refresh attempt of an idle identity.
func (m *Metrics) Keepalive(identity, result string) {
	m.keepalives.WithLabelValues(identity, result).Inc()
}

// Alert counts one new alert of kind (an identity that needs a person).
func (m *Metrics) Alert(kind string) { m.alerts.WithLabelValues(kind).Inc() }

// NotifyDelivered counts one delivery of an alert to a notify hook.
func (m *Metrics) NotifyDelivered(hook, result string) {
	m.deliveries.WithLabelValues(hook, result).Inc()
}

// SendDelayed counts an SMTP message of identity that waited d for its
// sending limit.
func (m *Metrics) SendDelayed(identity string, d time.Duration) {
	m.sendDelayed.WithLabelValues(identity).Inc()
	m.sendDelay.WithLabelValues(identity).Add(d.Seconds())
}

// SendRefused counts an SMTP message of identity refused for now by a
// sending limit; reason is "limit" or "upstream".
func (m *Metrics) SendRefused(identity, reason string) {
	m.sendRefused.WithLabelValues(identity, reason).Inc()
}
