package notify

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// Kinds of Alert.
const (
	KindNeedsLogin    = "needs_login"   // a person must run the login command
	KindConfiguration = "configuration" // the app registration, provider settings or account need a fix
)

// Hooks and delivery results, passed to Options.OnDelivery.
const (
	HookCommand = "command"
	HookWebhook = "webhook"

	DeliverySuccess = "success"
	DeliveryFailure = "failure"
	DeliveryDropped = "dropped" // too many deliveries in progress, or the Notifier was closed
)

// Defaults of Hooks and Options.
const (
	DefaultTimeout   = 10 * time.Second
	DefaultRetries   = 2               // webhook attempts after the first
	DefaultRetryWait = 2 * time.Second // before the first retry; doubles
)

// Bounds on the background work.
const (
	// maxPending bounds deliveries that are running or waiting to run;
	// alerts beyond are logged (they are in the log line anyway) and dropped.
	maxPending = 64
	// maxParallel bounds deliveries that run at once.
	maxParallel = 4
)

// Alert says that an identity needs a person. It holds words only: never a
// token or a secret. The JSON is what the command reads on stdin and the
// webhook receives.
type Alert struct {
	Identity string    `json:"identity"`
	Kind     string    `json:"kind"`    // KindNeedsLogin or KindConfiguration
	Cause    string    `json:"cause"`   // what happened, in plain words
	Code     string    `json:"code"`    // the provider's error code, like AADSTS700082; "" when none
	Fix      string    `json:"fix"`     // what to do
	Command  string    `json:"command"` // the command that fixes it, like xoauthd login ID; "" when none does
	Time     time.Time `json:"time"`    // when it was first reported
	Host     string    `json:"host"`    // the machine xoauthd runs on
}

// Hooks are the configured ways to deliver an alert besides the log.
type Hooks struct {
	// Command is run for each alert: the program (an absolute path) and its
	// arguments, no shell. Empty: none.
	Command []string
	// Webhook receives each alert as a JSON POST: https, or http to a
	// loopback host. Empty: none.
	Webhook string
	// Timeout bounds one command run and one webhook request; zero:
	// DefaultTimeout.
	Timeout time.Duration
}

// Options configure a Notifier. Every field may be left zero.
type Options struct {
	// Log receives the alerts (ERROR) and the deliveries; nil: slog.Default().
	Log *slog.Logger
	// Hooks returns the hooks in force, read for each new alert (so a
	// configuration reload applies to the next one); nil: none.
	Hooks func() Hooks
	// Host names this machine in alerts; "": os.Hostname().
	Host string
	// Now is the clock of Alert.Time; nil: time.Now.
	Now func() time.Time
	// HTTPClient posts to the webhook; nil: a client that follows no
	// redirects. Its own Timeout, if any, applies on top of Hooks.Timeout.
	HTTPClient *http.Client
	// OnAlert, when set, is called once for every new alert (metrics).
	OnAlert func(Alert)
	// OnDelivery, when set, is called after each delivery with its hook
	// (HookCommand, HookWebhook) and result (DeliverySuccess,
	// DeliveryFailure, DeliveryDropped).
	OnDelivery func(hook, result string)
	// Retries is the number of webhook attempts after a failed first one;
	// zero: DefaultRetries; negative: none.
	Retries int
	// RetryWait is the pause before the first retry, doubling for each
	// further one; zero: DefaultRetryWait.
	RetryWait time.Duration
}

// Notifier keeps the open alerts and delivers new ones. Safe for
// concurrent use.
type Notifier struct {
	opts   Options
	log    *slog.Logger
	client *http.Client
	ctx    context.Context // of the deliveries; cancelled by Close
	cancel context.CancelFunc
	slots  chan struct{} // maxParallel running deliveries
	wg     sync.WaitGroup

	mu      sync.Mutex
	open    map[string]map[string]Alert // lower-cased identity → cause key → alert
	pending int                         // deliveries running or waiting
	closed  bool                        // set by Close: no new deliveries
}

// New returns a Notifier.
func New(opts Options) *Notifier {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Host == "" {
		opts.Host, _ = os.Hostname()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Retries == 0 {
		opts.Retries = DefaultRetries
	}
	if opts.RetryWait <= 0 {
		opts.RetryWait = DefaultRetryWait
	}
	client := opts.HTTPClient
	if client == nil {
		client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Notifier{opts: opts, log: opts.Log, client: client, ctx: ctx, cancel: cancel,
		slots: make(chan struct{}, maxParallel), open: map[string]map[string]Alert{}}
}

// identityKey compares identities case-insensitively, like the token store.
func identityKey(identity string) string { return strings.ToLower(strings.TrimSpace(identity)) }

// causeKey tells causes apart: by the provider's code when there is one
// (its wording may carry trace ids), else by the words.
func causeKey(a Alert) string {
	if a.Code != "" {
		return a.Kind + "\x00" + a.Code
	}
	return a.Kind + "\x00" + a.Cause
}

// Report raises a: the first report of an identity and cause is logged at
// ERROR, counted and delivered in the background; later ones return false
// and do nothing until Clear. It never blocks on a delivery. Empty Kind,
// Time and Host are filled in.
func (n *Notifier) Report(a Alert) bool {
	a.Identity = strings.TrimSpace(a.Identity)
	if a.Kind == "" {
		a.Kind = KindNeedsLogin
	}
	id, cause := identityKey(a.Identity), causeKey(a)
	n.mu.Lock()
	if _, dup := n.open[id][cause]; dup {
		n.mu.Unlock()
		return false
	}
	if a.Time.IsZero() {
		a.Time = n.opts.Now()
	}
	if a.Host == "" {
		a.Host = n.opts.Host
	}
	if n.open[id] == nil {
		n.open[id] = map[string]Alert{}
	}
	n.open[id][cause] = a
	n.mu.Unlock()

	n.logAlert(a)
	if n.opts.OnAlert != nil {
		n.opts.OnAlert(a)
	}
	n.deliver(a)
	return true
}

// logAlert writes the one ERROR line of a new alert.
func (n *Notifier) logAlert(a Alert) {
	msg := "identity needs a new login"
	if a.Kind == KindConfiguration {
		msg = "identity needs a configuration fix"
	}
	attrs := []any{"identity", a.Identity, "cause", a.Cause}
	if a.Code != "" {
		attrs = append(attrs, "code", a.Code)
	}
	attrs = append(attrs, "fix", a.Fix)
	if a.Command != "" {
		attrs = append(attrs, "command", a.Command)
	}
	attrs = append(attrs, "note", "reported once until it works again")
	n.log.Error(msg, attrs...)
}

// Clear closes the alert of a's identity and cause, when it is open: the
// identity works again, and a later failure is reported anew.
func (n *Notifier) Clear(a Alert) bool {
	id, cause := identityKey(a.Identity), causeKey(a)
	n.mu.Lock()
	_, ok := n.open[id][cause]
	if ok {
		delete(n.open[id], cause)
		if len(n.open[id]) == 0 {
			delete(n.open, id)
		}
	}
	n.mu.Unlock()
	if ok {
		n.log.Info("identity works again; a new failure will be reported again", "identity", a.Identity, "cause", a.Cause)
	}
	return ok
}

// Open returns the open alerts, oldest first.
func (n *Notifier) Open() []Alert {
	n.mu.Lock()
	var out []Alert
	for _, causes := range n.open {
		out = slices.AppendSeq(out, maps.Values(causes))
	}
	n.mu.Unlock()
	slices.SortFunc(out, func(a, b Alert) int {
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(identityKey(a.Identity), identityKey(b.Identity)), cmp.Compare(causeKey(a), causeKey(b)))
	})
	return out
}

// OpenFor returns identity's open alerts, in no particular order.
func (n *Notifier) OpenFor(identity string) []Alert {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Collect(maps.Values(n.open[identityKey(identity)]))
}

// Close stops new deliveries and waits for those in progress until ctx is
// done; then it cuts them short (commands are killed, requests aborted).
// Report goes on logging after Close.
func (n *Notifier) Close(ctx context.Context) error {
	n.mu.Lock()
	n.closed = true
	idle := n.pending == 0
	n.mu.Unlock()
	if idle {
		// Nothing to wait for, whatever ctx says (a shutdown whose drain
		// time is up has nothing to report here).
		n.cancel()
		return nil
	}
	done := make(chan struct{})
	go func() {
		n.wg.Wait()
		close(done)
	}()
	defer n.cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		n.cancel()
		<-done
		return fmt.Errorf("alert deliveries cut short: %w", ctx.Err())
	}
}

// deliver runs the hooks in force for a in the background.
func (n *Notifier) deliver(a Alert) {
	var h Hooks
	if n.opts.Hooks != nil {
		h = n.opts.Hooks()
	}
	hooks := n.hooksOf(h)
	if len(hooks) == 0 {
		return
	}
	if h.Timeout <= 0 {
		h.Timeout = DefaultTimeout
	}
	payload, err := json.Marshal(a)
	if err != nil { // an Alert always marshals; be safe anyway
		n.log.Error("encoding an alert failed", "identity", a.Identity, "err", err)
		return
	}
	n.mu.Lock()
	ok := !n.closed && n.pending < maxPending
	if ok {
		n.pending++
		n.wg.Add(1)
	}
	n.mu.Unlock()
	if !ok {
		n.log.Error("alert not delivered: too many deliveries in progress, or shutting down", "identity", a.Identity, "hooks", hooks)
		for _, hook := range hooks {
			n.delivered(hook, DeliveryDropped)
		}
		return
	}
	go func() {
		defer n.wg.Done()
		defer func() {
			n.mu.Lock()
			n.pending--
			n.mu.Unlock()
		}()
		select {
		case n.slots <- struct{}{}:
		case <-n.ctx.Done():
			return
		}
		defer func() { <-n.slots }()
		if len(h.Command) > 0 {
			n.finish(HookCommand, a, n.runCommand(h, a, payload))
		}
		if h.Webhook != "" {
			n.finish(HookWebhook, a, n.postWebhook(h, payload))
		}
	}()
}

// hooksOf names the hooks h configures.
func (n *Notifier) hooksOf(h Hooks) []string {
	var out []string
	if len(h.Command) > 0 {
		out = append(out, HookCommand)
	}
	if h.Webhook != "" {
		out = append(out, HookWebhook)
	}
	return out
}

// finish logs and counts one delivery.
func (n *Notifier) finish(hook string, a Alert, err error) {
	if err != nil {
		n.log.Error("alert delivery failed", "hook", hook, "identity", a.Identity, "err", err)
		n.delivered(hook, DeliveryFailure)
		return
	}
	n.log.Info("alert delivered", "hook", hook, "identity", a.Identity)
	n.delivered(hook, DeliverySuccess)
}

func (n *Notifier) delivered(hook, result string) {
	if n.opts.OnDelivery != nil {
		n.opts.OnDelivery(hook, result)
	}
}
