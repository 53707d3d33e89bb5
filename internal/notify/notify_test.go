package notify

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestOnceUntilCleared: ten reports of one cause are one alert; after
// Clear (the identity works again) the next failure alerts again.
func TestOnceUntilCleared(t *testing.T) {
	r := newRig(t, Hooks{}, nil)
	a := sample("billing@contoso.com")
	for i := range 10 {
		b := a
		if i%2 == 1 {
			b.Identity = "Billing@Contoso.com" // identities compare case-insensitively
		}
		if got := r.n.Report(b); got != (i == 0) {
			t.Fatalf("report %d = %v", i, got)
		}
	}
	if n := len(r.alerts); n != 1 {
		t.Fatalf("%d OnAlert calls, want 1", n)
	}
	if n := r.log.count("level=ERROR"); n != 1 {
		t.Fatalf("%d ERROR lines, want 1:\n%s", n, r.log)
	}
	line := r.log.String()
	for _, want := range []string{`msg="identity needs a new login"`, "identity=billing@contoso.com", `cause="refresh token expired"`,
		"code=AADSTS700082", `command="xoauthd login --config /etc/xoauthd/xoauthd.yaml billing@contoso.com"`, "fix="} {
		if !strings.Contains(line, want) {
			t.Errorf("log line lacks %s:\n%s", want, line)
		}
	}
	open := r.n.Open()
	if len(open) != 1 || open[0].Identity != "billing@contoso.com" || open[0].Host != "erp-host" ||
		!open[0].Time.Equal(time.Date(2025, 3, 1, 8, 30, 0, 0, time.UTC)) {
		t.Fatalf("Open() = %+v", open)
	}

	if !r.n.Clear(Alert{Identity: "BILLING@contoso.com", Kind: KindNeedsLogin, Code: "AADSTS700082"}) {
		t.Fatal("Clear found no alert")
	}
	if r.n.Clear(a) {
		t.Error("second Clear found the alert again")
	}
	if len(r.n.Open()) != 0 || len(r.n.OpenFor(a.Identity)) != 0 {
		t.Fatalf("alerts still open after Clear: %+v", r.n.Open())
	}
	if !r.n.Report(a) {
		t.Fatal("a failure after Clear did not alert")
	}
	if n := len(r.alerts); n != 2 {
		t.Errorf("%d OnAlert calls, want 2", n)
	}
	if n := r.log.count("level=ERROR"); n != 2 {
		t.Errorf("%d ERROR lines, want 2", n)
	}
}

// TestCausesApart: another cause of the same identity, and the same cause
// of another identity, are alerts of their own; without a code the words
// tell causes apart.
func TestCausesApart(t *testing.T) {
	r := newRig(t, Hooks{}, nil)
	a := sample("billing@contoso.com")
	mfa := a
	mfa.Code, mfa.Cause = "AADSTS50076", "multi-factor authentication is now required"
	other := sample("scans@contoso.com")
	cfg := Alert{Identity: a.Identity, Kind: KindConfiguration, Code: "AADSTS7000222", Cause: "provider m365: client secret expired",
		Fix: "create a new client secret in the app registration"}
	noCode := Alert{Identity: a.Identity, Cause: "no token stored for billing@contoso.com", Fix: "run xoauthd login"}
	noCode2 := noCode
	noCode2.Cause = "the stored token comes from another provider"
	for _, x := range []Alert{a, mfa, other, cfg, noCode, noCode2} {
		if !r.n.Report(x) {
			t.Errorf("%s %q was not a new alert", x.Identity, x.Cause)
		}
	}
	sameWords := a
	sameWords.Cause = "refresh token expired (worded differently)"
	if r.n.Report(sameWords) || r.n.Report(noCode) {
		t.Error("a repeated cause alerted again")
	}
	if n := len(r.n.Open()); n != 6 {
		t.Errorf("%d open alerts, want 6", n)
	}
	if n := len(r.n.OpenFor("BILLING@contoso.com")); n != 5 {
		t.Errorf("%d open alerts for billing, want 5", n)
	}
	if !strings.Contains(r.log.String(), `msg="identity needs a configuration fix"`) {
		t.Errorf("no configuration line:\n%s", r.log)
	}
	for _, got := range r.n.Open() {
		if got.Cause == noCode.Cause && got.Kind != KindNeedsLogin {
			t.Errorf("kind defaults to %q", got.Kind)
		}
	}
}

// TestReportNeverBlocks: a hook that hangs does not hold up Report, and
// alerts beyond the pending bound are dropped and counted.
func TestReportNeverBlocks(t *testing.T) {
	r := newRig(t, Hooks{Command: helperCommand(t, "hang"), Timeout: time.Minute}, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range maxPending + 3 {
			r.n.Report(sample("user" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + "@contoso.com"))
		}
	}()
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Fatal("Report blocked on a hanging command")
	}
	for range 3 {
		r.delivered(t, HookCommand, DeliveryDropped)
	}
	if !strings.Contains(r.log.String(), "alert not delivered") {
		t.Errorf("dropped alerts not logged:\n%s", r.log)
	}
	// Close cuts the hanging commands short.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := r.n.Close(ctx); err == nil {
		t.Error("Close with hanging deliveries returned nil")
	}
	if r.n.Report(sample("late@contoso.com")); !strings.Contains(r.log.String(), "late@contoso.com") {
		t.Error("Report after Close logged nothing")
	}
}

// TestCloseIdleWithDoneContext: with no delivery under way, Close reports
// nothing cut short even when its context is done already (a shutdown at
// the end of its drain time).
func TestCloseIdleWithDoneContext(t *testing.T) {
	for range 20 {
		r := newRig(t, Hooks{}, func(o *Options) { o.Hooks = nil })
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := r.n.Close(ctx); err != nil {
			t.Fatalf("Close without deliveries = %v", err)
		}
	}
}

// TestNoHooks: without hooks an alert is logged and kept, nothing is run.
func TestNoHooks(t *testing.T) {
	r := newRig(t, Hooks{}, func(o *Options) { o.Hooks = nil })
	r.n.Report(sample("billing@contoso.com"))
	if err := r.n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(r.deliveries) != 0 {
		t.Errorf("%d deliveries without hooks", len(r.deliveries))
	}
}
