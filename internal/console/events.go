package console

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/xoauthd/xoauthd/proxy"
)

// Bounds of the recent failures kept.
const (
	// eventsPerLogin is how many recent failures are kept per account.
	eventsPerLogin = 5
)

// Event is one failed mail login of an account, from its audit line.
type Event struct {
	Time   time.Time
	Proto  string // imap, pop3 or smtp
	Result string // failure (cannot succeed as is) or error (something was down)
	Reason string // the short cause
	Why    string // the cause and the fix, when the front explained it
}

// Events keeps the recent failed logins of each configured account. It
// reads them from the audit lines that the fronts write ("login" with
// result=failure or error, see proxy.Gateway.AuditLogin), which never carry a
// secret: Handler wraps the daemon's log handler. It is safe for
// concurrent use.
type Events struct {
	known func(login string) bool
	mu    sync.Mutex
	by    map[string][]Event // lower-case login → oldest first
}

// NewEvents returns an Events that keeps failures of the logins known
// reports as configured (a client may send any login; those are not kept).
func NewEvents(known func(login string) bool) *Events {
	return &Events{known: known, by: map[string][]Event{}}
}

// Recent returns login's recent failures, newest first.
func (e *Events) Recent(login string) []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	evs := e.by[strings.ToLower(login)]
	out := make([]Event, 0, len(evs))
	for i := len(evs) - 1; i >= 0; i-- {
		out = append(out, evs[i])
	}
	return out
}

func (e *Events) add(login string, ev Event) {
	if login == "" || !e.known(login) {
		return
	}
	key := strings.ToLower(login)
	e.mu.Lock()
	defer e.mu.Unlock()
	evs := append(e.by[key], ev)
	if len(evs) > eventsPerLogin {
		evs = evs[len(evs)-eventsPerLogin:]
	}
	e.by[key] = evs
}

// Handler returns a slog.Handler that passes everything to next and keeps
// the failed logins.
func (e *Events) Handler(next slog.Handler) slog.Handler {
	return &eventHandler{events: e, next: next}
}

// eventHandler tees the audit lines of failed logins into Events.
type eventHandler struct {
	events *Events
	next   slog.Handler
	attrs  []slog.Attr // from WithAttrs, outside any group (proto lives here)
	group  bool        // WithGroup was called: later attrs are not the audit's
}

// Enabled is true at INFO and above (audit lines are INFO) whatever next
// wants; Handle passes on only what next is enabled for.
func (h *eventHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.next.Enabled(ctx, l)
}

func (h *eventHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "login" && !h.group {
		h.keep(r)
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

// keep records a failed login from its audit line.
func (h *eventHandler) keep(r slog.Record) {
	var login string
	ev := Event{Time: r.Time}
	read := func(a slog.Attr) bool {
		switch a.Key {
		case "proto":
			ev.Proto = a.Value.String()
		case "result":
			ev.Result = a.Value.String()
		case "login":
			login = a.Value.String()
		case "reason":
			ev.Reason = a.Value.String()
		case "why":
			ev.Why = a.Value.String()
		}
		return true
	}
	for _, a := range h.attrs {
		read(a)
	}
	r.Attrs(read)
	if ev.Result == proxy.LoginFailure || ev.Result == proxy.LoginError {
		h.events.add(login, ev)
	}
}

func (h *eventHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := *h
	n.next = h.next.WithAttrs(attrs)
	if !h.group {
		n.attrs = append(append([]slog.Attr(nil), h.attrs...), attrs...)
	}
	return &n
}

func (h *eventHandler) WithGroup(name string) slog.Handler {
	n := *h
	n.next = h.next.WithGroup(name)
	n.group = true
	return &n
}
