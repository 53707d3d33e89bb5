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
// message "login", and counts it on g.Meter (g may be nil). log
// is the connection's logger, which already carries cid, proto and remote:
// every front's line has the same keys in the same order (result, login,
// identity, reason, then Attrs), so that one query finds them all.
func (g *Gateway) AuditLogin(ctx context.Context, log *slog.Logger, a LoginAudit) {
	g.meter().login(a.Result)
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
	for _, at := range a.Attrs {
		attrs = append(attrs, redactAttr(at))
	}
	log.LogAttrs(ctx, slog.LevelInfo, "login", attrs...)
}

// redactAttr passes the text of an audit attribute (an error that quotes
// the upstream's reply, the explanation built from it) through
// RedactUpstreamText, so that an upstream echoing the XOAUTH2 response does
// not put the token into the log.
func redactAttr(at slog.Attr) slog.Attr {
	v := at.Value.Resolve()
	switch {
	case v.Kind() == slog.KindString:
		return slog.String(at.Key, RedactUpstreamText(v.String()))
	case v.Kind() == slog.KindAny:
		if err, ok := v.Any().(error); ok && err != nil {
			return slog.String(at.Key, RedactUpstreamText(err.Error()))
		}
	}
	return at
}

// cutLogin bounds a login for a log line: a client may send anything as
// its user name.
func cutLogin(login string) string {
	if len(login) > maxLoggedLoginLength {
		return login[:maxLoggedLoginLength] + "..."
	}
	return login
}
