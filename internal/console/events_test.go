package console

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/xoauthd/xoauthd/internal/testkit"
)

// BenchmarkEventsHandler measures what the tee costs a log line that the
// daemon's handler drops (level warn) and one it writes (level info): an
// INFO record is built for the tee either way.
func BenchmarkEventsHandler(b *testing.B) {
	for _, level := range []slog.Level{slog.LevelWarn, slog.LevelInfo} {
		base := slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: level})
		ev := NewEvents(func(string) bool { return true })
		for _, h := range []struct {
			name string
			h    slog.Handler
		}{{"plain", base}, {"tee", ev.Handler(base)}} {
			b.Run(level.String()+"/"+h.name, func(b *testing.B) {
				log := slog.New(h.h).With("cid", 7, "proto", "imap", "remote", "127.0.0.1:5555")
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					log.LogAttrs(ctx, slog.LevelInfo, "closed", slog.Int64("in", 1234), slog.Int64("out", 5678))
				}
			})
		}
	}
}

// TestEventsHandlerPassesOn: the tee passes every record its next handler
// wants, with the attributes and groups it was given, and nothing else.
func TestEventsHandlerPassesOn(t *testing.T) {
	var out testkit.SyncBuffer
	base := slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelWarn})
	ev := NewEvents(func(string) bool { return true })
	log := slog.New(ev.Handler(base)).With("proto", "pop3")
	log.Info("login", "result", "failure", "login", "erp-x", "reason", "bad local credentials")
	log.WithGroup("g").Warn("login", "result", "failure", "login", "erp-y", "reason", "in a group")
	log.Warn("something", "k", "v")
	got := out.String()
	if want := "level=WARN msg=login proto=pop3 g.result=failure g.login=erp-y g.reason=\"in a group\"\n"; !strings.Contains(got, want) {
		t.Errorf("output %q lacks %q", got, want)
	}
	if !strings.Contains(got, "level=WARN msg=something proto=pop3 k=v\n") || strings.Contains(got, "level=INFO") {
		t.Errorf("output %q", got)
	}
	if evs := ev.Recent("erp-x"); len(evs) != 1 || evs[0].Proto != "pop3" || evs[0].Reason != "bad local credentials" {
		t.Errorf("kept %+v", evs)
	}
	if evs := ev.Recent("erp-y"); len(evs) != 0 {
		t.Errorf("a grouped record was kept: %+v", evs)
	}
}
