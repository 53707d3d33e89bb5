package proxy

import "time"

// Directions of relayed bytes, for Metrics.Relayed and Meter.Relayed.
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

// Meter is Metrics bound to one listener's protocol: what a Gateway (for
// logins and upstream latencies) and a Relay (for bytes) record to. Its
// zero value records nothing. The daemon sets it beside Server.Metrics, so
// every observation names the protocol it was made on.
type Meter struct {
	Metrics  Metrics
	Protocol string
}

// Relayed counts n bytes relayed in direction (ClientToUpstream or
// UpstreamToClient), for a front that moves bytes itself instead of
// through Relay.
func (c Meter) Relayed(direction string, n int64) { c.relayed(direction, n) }

func (c Meter) relayed(direction string, n int64) {
	if c.Metrics != nil && n > 0 {
		c.Metrics.Relayed(c.Protocol, direction, n)
	}
}

func (c Meter) login(result string) {
	if c.Metrics != nil {
		c.Metrics.Login(c.Protocol, result)
	}
}

func (c Meter) throttled() {
	if c.Metrics != nil {
		c.Metrics.Throttled(c.Protocol)
	}
}

func (c Meter) identityLimited() {
	if c.Metrics != nil {
		c.Metrics.IdentityLimited(c.Protocol)
	}
}

func (c Meter) dialed(d time.Duration) {
	if c.Metrics != nil {
		c.Metrics.UpstreamDialed(c.Protocol, d)
	}
}

func (c Meter) authenticated(d time.Duration) {
	if c.Metrics != nil {
		c.Metrics.UpstreamAuthenticated(c.Protocol, d)
	}
}
