package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
)

// Account is the result of a successful local login: the local login name and
// the OAuth identity and mailbox it maps to. It is an immutable value.
type Account struct {
	Login    string // what the legacy client typed as user name
	Identity string // whose OAuth token is used; the token store key
	Mailbox  string // IMAP/POP3 user= (may be a shared mailbox)
	Provider string // name of the provider in the configuration
}

// Errors a front maps to its protocol's replies. Fronts test them with errors.Is.
var (
	// ErrBadCredentials means the local login or password is wrong. The client
	// sees the same answer for an unknown login and a wrong password.
	ErrBadCredentials = errors.New("invalid local credentials")
	// ErrThrottled means too many recent failures from this source or for this
	// login; the client is refused for now without checking the password.
	ErrThrottled = errors.New("too many failed logins, try again later")
	// ErrUpstreamRejected means the upstream server refused the XOAUTH2 login.
	// A LoginFunc wraps it so that Connect refreshes the token and retries once.
	ErrUpstreamRejected = errors.New("upstream rejected the token")
	// ErrUpstreamUnavailable means the upstream could not be reached or broke
	// off; it is temporary.
	ErrUpstreamUnavailable = errors.New("upstream unavailable")
	// ErrIdentityLimit means the identity has as many upstream sessions as
	// its limit allows; the login is refused without dialling.
	ErrIdentityLimit = errors.New("too many upstream sessions for this identity")
)

// Authenticator checks a local login and password and returns the account.
type Authenticator interface {
	Authenticate(ctx context.Context, login, password string, remote netip.Addr) (Account, error)
}

// TokenSource hands out access tokens per identity (tokens.Manager implements it).
type TokenSource interface {
	// Token returns a valid access token for identity, refreshing when needed.
	Token(ctx context.Context, identity string) (string, error)
	// Refresh forces a refresh after an upstream rejected stale, unless the
	// cached token already differs from stale.
	Refresh(ctx context.Context, identity, stale string) (string, error)
}

// Gateway is one listener's path from a local login to a logged-in upstream
// connection. Its fields read the live configuration, so a reload changes what
// the next login sees without rebuilding the gateway.
type Gateway struct {
	Auth   Authenticator
	Tokens TokenSource
	// Upstream returns the dialer for the account's upstream on this listener.
	Upstream func(acct Account) (*Dialer, error)
	// Sessions, when set, registers each logged-in session under its login
	// so that a reload can end those of a removed or changed account.
	Sessions *Sessions
	// Explain, when set, explains failed logins for the audit line
	// (LoginFailed).
	Explain Explainer
	// Limits, with MaxPerIdentity > 0, bounds the upstream sessions of an
	// identity over every listener whose Gateway shares Limits and
	// LimitKey (one key per protocol): Connect refuses a login over the
	// limit at once with an *IdentityLimitError, before it dials. A session
	// holds its place until its connection ends. Like Sessions, it counts
	// connections accepted by a Server.
	Limits         *IdentityLimits
	LimitKey       string
	MaxPerIdentity int
	// Meter, when set, counts logins (AuditLogin), refusals for throttling
	// and at the identity limit (LoginFailed) and the upstream latencies of
	// Connect.
	Meter Meter
}

// meter is g's Meter; a nil Gateway records nothing.
func (g *Gateway) meter() Meter {
	if g == nil {
		return Meter{}
	}
	return g.Meter
}

// LoginFunc speaks one protocol's XOAUTH2 login on a freshly dialled upstream
// connection and returns the front's state for the session (typically the
// connection and its buffered reader). d is the dialer that made conn (for
// StartTLS in starttls mode). It must wrap ErrUpstreamRejected when the
// upstream refused the token, and close conn on any error.
type LoginFunc[T any] func(ctx context.Context, conn net.Conn, d *Dialer, acct Account, token string) (T, error)
