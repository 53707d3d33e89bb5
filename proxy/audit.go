package proxy

import (
	"context"
	"log/slog"
)

// LoginAudit is one login attempt, as a front saw it.
type LoginAudit struct {
	Result   string // LoginSuccess, LoginFailure or LoginError
	Login    string // the local login the client sent (cut when very long)
	Identity string // the OAuth identity it maps to; "" before the local check passed
	Reason   string // short cause of a failure or error; "" on success
	// Attrs add context after the standard keys: the SASL mechanism, the
	// mailbox, the internal error, the fix. Never a secret.
	Attrs []slog.Attr
}

// AuditLogin writes the one audit line of a login attempt, at INFO with the
// message "login", and counts it in the metrics of ctx's connection. log
// is the connection's logger, which already carries cid, proto and remote:
// every front's line has the same keys in the same order (result, login,
// identity, reason, then Attrs), so that one query finds them all.
func AuditLogin(ctx context.Context, log *slog.Logger, a LoginAudit) {
	metricsFrom(ctx).login(a.Result)
	if log == nil {
		return
	}
	attrs := make([]slog.Attr, 0, 4+len(a.Attrs))
	attrs = append(attrs,
		slog.String("result", a.Result),
		slog.String("login", cutLogin(a.Login)),
		slog.String("identity", a.Identity),
		slog.String("reason", a.Reason),
	)
	attrs = append(attrs, a.Attrs...)
	log.LogAttrs(ctx, slog.LevelInfo, "login", attrs...)
}

// cutLogin bounds a login for a log line: a client may send anything as
// its user name.
func cutLogin(login string) string {
	if len(login) > maxLoggedLoginLength {
		return login[:maxLoggedLoginLength] + "..."
	}
	return login
}
