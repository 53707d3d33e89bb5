package proxy

import (
	"context"
	"time"
)

// Directions of relayed bytes, for Metrics.Relayed and RecordRelayed.
const (
	ClientToUpstream = "client_to_upstream"
	UpstreamToClient = "upstream_to_client"
)

// Results of a login attempt, for the audit line (AuditLogin) and Metrics.Login.
const (
	// LoginSuccess: the client is logged in upstream.
	LoginSuccess = "success"
	// LoginFailure: the login was refused and will be again as it is (bad
	// local credentials, throttled, a token that needs a new login, a token
	// the upstream rejects).
	LoginFailure = "failure"
	// LoginError: something was down (identity provider, upstream); the
	// same login may succeed later.
	LoginError = "error"
)

// Metrics receives what the proxy and the fronts observe about connections
// and logins. internal/metrics implements it with Prometheus collectors; a
// nil Metrics records nothing, so no package but internal/metrics depends
// on Prometheus. Every method must be safe for concurrent use and cheap:
// Relayed is called for each chunk the relay moves.
type Metrics interface {
	// ConnOpened is called when an accepted connection starts being served,
	// ConnClosed when it has ended.
	ConnOpened(protocol string)
	ConnClosed(protocol string)
	// ConnRefused is called for a connection accepted over the listener's
	// limit (it gets the protocol's "too busy" reply, or is closed).
	ConnRefused(protocol string)
	// Login is called once per login attempt, with LoginSuccess,
	// LoginFailure or LoginError (see AuditLogin).
	Login(protocol, result string)
	// Throttled is called when a login is refused without checking its
	// password because of recent failures (ErrThrottled).
	Throttled(protocol string)
	// IdentityLimited is called when a login is refused because its
	// identity has as many upstream sessions as allowed (ErrIdentityLimit).
	IdentityLimited(protocol string)
	// UpstreamDialed reports a successful upstream dial: TCP connect plus,
	// for implicit TLS, the verified handshake.
	UpstreamDialed(protocol string, d time.Duration)
	// UpstreamAuthenticated reports a successful upstream login: from the
	// dialled connection to logged in (greeting, STARTTLS where used,
	// XOAUTH2 and what the front checks after it).
	UpstreamAuthenticated(protocol string, d time.Duration)
	// Relayed counts n bytes carried after login in direction
	// (ClientToUpstream or UpstreamToClient).
	Relayed(protocol, direction string, n int64)
}

// metricsKey is the context key of a connection's metrics.
type metricsKey struct{}

// connMetrics is Metrics bound to one connection's protocol. Its zero value
// records nothing.
type connMetrics struct {
	m     Metrics
	proto string
}

// WithMetrics returns a context whose connection-level observations (relayed
// bytes, upstream latencies, throttled and audited logins) go to m, labelled
// with protocol. A Server does this for every connection it serves when its
// Metrics field is set; fronts and tests that run a session without a
// Server may call it themselves. Like net/http/httptrace, the context
// carries the hooks so that Connect, Relay and Authenticate keep their
// signatures.
func WithMetrics(ctx context.Context, m Metrics, protocol string) context.Context {
	if m == nil {
		return ctx
	}
	return context.WithValue(ctx, metricsKey{}, connMetrics{m: m, proto: protocol})
}

// metricsFrom returns the metrics of ctx's connection (zero: none).
func metricsFrom(ctx context.Context) connMetrics {
	cm, _ := ctx.Value(metricsKey{}).(connMetrics)
	return cm
}

// RecordRelayed counts n bytes relayed in direction on the metrics of ctx's
// connection, for a front that moves bytes itself instead of through Relay.
func RecordRelayed(ctx context.Context, direction string, n int64) {
	metricsFrom(ctx).relayed(direction, n)
}

func (c connMetrics) relayed(direction string, n int64) {
	if c.m != nil && n > 0 {
		c.m.Relayed(c.proto, direction, n)
	}
}

func (c connMetrics) login(result string) {
	if c.m != nil {
		c.m.Login(c.proto, result)
	}
}

func (c connMetrics) throttled() {
	if c.m != nil {
		c.m.Throttled(c.proto)
	}
}

func (c connMetrics) identityLimited() {
	if c.m != nil {
		c.m.IdentityLimited(c.proto)
	}
}

func (c connMetrics) dialed(d time.Duration) {
	if c.m != nil {
		c.m.UpstreamDialed(c.proto, d)
	}
}

func (c connMetrics) authenticated(d time.Duration) {
	if c.m != nil {
		c.m.UpstreamAuthenticated(c.proto, d)
	}
}
