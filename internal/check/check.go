package check

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/diagnose"
	"github.com/xoauthd/xoauthd/proxy"
	"github.com/xoauthd/xoauthd/tokens"
)

// DefaultStepTimeout bounds one step (a whole IMAP, POP3 or SMTP session,
// or the token refresh) when Options.StepTimeout is zero.
const DefaultStepTimeout = 60 * time.Second

// Step results (Step.Status).
const (
	StatusPass = "pass"
	StatusFail = "fail"
	StatusSkip = "skip"
)

// Report is what a check found: "xoauthd check --json" prints it as is.
type Report struct {
	Config   string          `json:"config"` // the configuration file
	OK       bool            `json:"ok"`     // no step failed
	Accounts []AccountReport `json:"accounts"`
}

// AccountReport is the steps of one account, in the order they ran.
type AccountReport struct {
	Login    string `json:"login"`
	Identity string `json:"identity"`
	Mailbox  string `json:"mailbox"`
	Provider string `json:"provider"`
	OK       bool   `json:"ok"` // no step failed
	Steps    []Step `json:"steps"`
}

// Step is one step: config, token, imap, pop3 or smtp. The facts after
// Reply are set by the steps that measure them.
type Step struct {
	Name    string                `json:"step"`
	Status  string                `json:"status"` // StatusPass, StatusFail or StatusSkip
	Summary string                `json:"summary"`
	Details []string              `json:"details,omitempty"`
	Problem *diagnose.Explanation `json:"problem,omitempty"` // set when Status is StatusFail
	// Reply is the server's reply behind Problem, when there was one.
	Reply string `json:"reply,omitempty"`

	Upstream  string    `json:"upstream,omitempty"`       // host:port
	TLS       string    `json:"tls,omitempty"`            // TLS version
	Expiry    time.Time `json:"expiry,omitzero"`          // token: access token expiry
	SignedIn  string    `json:"signed_in_user,omitempty"` // token: who signed in
	Scopes    []string  `json:"scopes,omitempty"`         // token: permissions in the access token
	Messages  *int      `json:"messages,omitempty"`       // imap: INBOX; pop3: maildrop
	Octets    *int64    `json:"octets,omitempty"`         // pop3: maildrop size
	TestReply string    `json:"test_reply,omitempty"`     // smtp: final reply to the test message
}

func (s *Step) pass(summary string) { s.Status, s.Summary = StatusPass, summary }

// fail records a failed step: summary says what failed, err is explained
// for acct.
func (s *Step) fail(summary string, err error, acct diagnose.Account) {
	s.Status, s.Summary = StatusFail, summary
	e, _ := diagnose.Explain(err, acct)
	s.Problem = &e
	if r := diagnose.ReplyOf(err); r != nil {
		s.Reply = r.Line
	}
}

// Tokens gets the access token of an identity. *tokens.Manager implements
// it; the console passes the daemon's live one.
type Tokens interface {
	// Token returns a valid access token, refreshing a stale one.
	Token(ctx context.Context, identity string) (string, error)
	// Refresh returns a new access token unless the cached one is no
	// longer stale (another caller refreshed it).
	Refresh(ctx context.Context, identity, stale string) (string, error)
	// Status returns the identity's stored state; ok is false when
	// nothing is stored.
	Status(identity string) (st tokens.Status, ok bool, err error)
}

// Options are the dependencies of a Checker.
type Options struct {
	// Config is the configuration snapshot the check reads: providers,
	// servers and accounts.
	Config *config.Config
	// Tokens returns what gets and refreshes the access tokens of an
	// account with provider p. The command line builds a token manager
	// for p; a daemon passes its live manager, which knows the provider.
	Tokens func(p *config.Provider) Tokens
	// StoreMissing says that no token store exists yet: every account
	// that needs a sign-in fails its token step with the fix.
	StoreMissing bool
	// StoreError, when set, is why the token store could not be opened;
	// every account that needs a sign-in fails its token step with it.
	StoreError error
	// Dialer returns the dialer of an upstream address; nil means
	// proxy.NewDialer.
	Dialer func(addr string, mode proxy.TLSMode, caFile string) (*proxy.Dialer, error)
	// SendTo, when set, is the address the smtp step sends a short test
	// message to.
	SendTo string
	// Now is the clock for expiry texts and the test message; nil means
	// time.Now.
	Now func() time.Time
	// StepTimeout bounds one step; zero means DefaultStepTimeout.
	StepTimeout time.Duration
}

// Checker runs the steps of a check. It is safe for concurrent use: each
// call works on its own connections.
type Checker struct {
	opts Options
}

// New returns a Checker over opts.
func New(opts Options) *Checker {
	if opts.Dialer == nil {
		opts.Dialer = proxy.NewDialer
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.StepTimeout <= 0 {
		opts.StepTimeout = DefaultStepTimeout
	}
	return &Checker{opts: opts}
}

// Check runs CheckAccount for each account in order and returns the report.
// progress, when not nil, is called as each step ends with the account's
// login and the step.
func (c *Checker) Check(ctx context.Context, accounts []config.Account, progress func(login string, s Step)) Report {
	r := Report{Config: c.opts.Config.Path, OK: true}
	for _, a := range accounts {
		var each func(Step)
		if progress != nil {
			each = func(s Step) { progress(a.Login, s) }
		}
		ar := c.CheckAccount(ctx, a, each)
		r.OK = r.OK && ar.OK
		r.Accounts = append(r.Accounts, ar)
	}
	return r
}

// CheckAccount runs the steps of one account in order: config, token, then
// imap, pop3 and smtp for each configured server of that protocol. A step
// that cannot run for want of an earlier one is skipped with the reason.
// progress, when not nil, is called with each step as it ends.
func (c *Checker) CheckAccount(ctx context.Context, a config.Account, progress func(Step)) AccountReport {
	ar := AccountReport{Login: a.Login, Identity: a.Identity, Mailbox: a.Mailbox, Provider: a.Provider, OK: true}
	acct := diagnose.Account{Identity: a.Identity, Mailbox: a.Mailbox}
	add := func(s Step) {
		ar.Steps = append(ar.Steps, s)
		ar.OK = ar.OK && s.Status != StatusFail
		if progress != nil {
			progress(s)
		}
	}
	prov, cs := c.configStep(a)
	add(cs)
	var token string
	if prov == nil {
		add(Step{Name: "token", Status: StatusSkip, Summary: "skipped: the configuration step failed"})
	} else {
		var ts Step
		token, ts = c.tokenStep(ctx, a, prov, acct)
		add(ts)
	}
	for _, proto := range []string{config.ProtoIMAP, config.ProtoPOP3, config.ProtoSMTP} {
		servers := serversFor(c.opts.Config, proto)
		if len(servers) == 0 {
			add(Step{Name: proto, Status: StatusSkip, Summary: "skipped: no " + proto + " server in the configuration"})
			continue
		}
		for _, srv := range servers {
			if token == "" {
				add(Step{Name: proto, Status: StatusSkip, Summary: "skipped: no access token (see the token step)"})
				continue
			}
			add(c.mailStep(ctx, a, prov, srv, token, acct))
		}
	}
	return ar
}

// serversFor returns the configured servers of one protocol.
func serversFor(cfg *config.Config, proto string) []config.Server {
	var out []config.Server
	for _, s := range cfg.Servers {
		if s.Protocol == proto {
			out = append(out, s)
		}
	}
	return out
}

// mailStep runs the IMAP, POP3 or SMTP step against the upstream srv uses
// for the account's provider.
func (c *Checker) mailStep(ctx context.Context, a config.Account, prov *config.Provider, srv config.Server, token string, acct diagnose.Account) Step {
	s := Step{Name: srv.Protocol}
	addr, mode := srv.UpstreamFor(prov)
	s.Upstream = addr
	if addr == "" {
		s.fail("no upstream", fmt.Errorf("the %s server %s has no upstream for provider %s", srv.Protocol, srv.Listen, prov.Name), acct)
		return s
	}
	d, err := c.opts.Dialer(addr, proxy.TLSMode(mode), srv.CAFile)
	if err != nil {
		s.fail("cannot use upstream "+addr, err, acct)
		return s
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.StepTimeout)
	defer cancel()
	switch srv.Protocol {
	case config.ProtoIMAP:
		c.imapStep(ctx, &s, d, a, token, acct)
	case config.ProtoPOP3:
		c.pop3Step(ctx, &s, d, a, token, acct)
	case config.ProtoSMTP:
		c.smtpStep(ctx, &s, d, a, token, acct)
	}
	return s
}

// stageError names the stage of a mail session that failed.
type stageError struct {
	stage string // e.g. "XOAUTH2 login as billing@contoso.com"
	err   error
}

func (e *stageError) Error() string { return e.stage + ": " + e.err.Error() }
func (e *stageError) Unwrap() error { return e.err }

// failed wraps err with the stage that failed.
func failed(stage string, err error) error { return &stageError{stage: stage, err: err} }

// failStage records a failed mail session: the summary names the upstream
// and the stage.
func (s *Step) failStage(err error, acct diagnose.Account) {
	var se *stageError
	what := "failed"
	if errors.As(err, &se) {
		what = se.stage + " failed"
	}
	s.fail(s.Upstream+": "+what, err, acct)
}
