// Package proxy owns what every protocol front shares: listeners with connection
// ids and limits, the local credential check (argon2id, cached, throttled), the
// upstream dialer (implicit TLS or STARTTLS, always verified), the hand-off from
// a front's pre-auth dialogue to an upstream connection logged in with a fresh
// token (retrying once after a refresh), and the byte relay that carries an IMAP
// or POP3 session after login.
//
// A Server runs the accept loops of one front's listeners: connection ids from a process-wide
// IDSource, a per-connection slog logger (cid, proto, remote), a bound on
// concurrent connections (the front's Refuse reply beyond it), panic recovery
// and a two-phase Shutdown. Credentials is the local Authenticator: cached,
// sharing concurrent verifications, and throttling failures per source and
// login through FailureCounters (throttle.go). Classify and
// Gateway.LoginFailed are the one login failure policy of the fronts
// (policy.go); IdentityLimits bounds the upstream sessions per identity
// (limits.go). Dialer
// (one per upstream, see Dialers) makes verified TLS connections with session
// resumption. Connect and Relay carry a session from login to its end;
// Sessions (sessions.go) remembers each logged-in session by login, so a
// configuration reload can end those of a removed or changed account.
//
// Observability hooks shared by the fronts: AuditLogin writes the one audit
// line per login attempt; a Server's Metrics count connections and a
// Gateway's Meter (passed on to Relay in RelayOptions) counts logins,
// throttling, upstream latencies and relayed bytes; Conn.Traced wraps a connection for the redacted protocol trace of
// the dialogue up to the login (relayed sessions are never traced).
//
// proxy parses no mail protocol: the fronts (imapfront, pop3front, smtpfront) do,
// and hand it LoginFunc values that speak their protocol's XOAUTH2 exchange.
package proxy
