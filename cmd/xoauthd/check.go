package main

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/diagnose"
	"github.com/xoauthd/xoauthd/proxy"
)

// checkStepTimeout bounds one step of "xoauthd check" (a whole IMAP, POP3 or
// SMTP session, or the token refresh).
const checkStepTimeout = 60 * time.Second

// Step results.
const (
	statusPass = "pass"
	statusFail = "fail"
	statusSkip = "skip"
)

// checkReport is what "xoauthd check" found; --json prints it as is.
type checkReport struct {
	Config   string          `json:"config"`
	OK       bool            `json:"ok"` // no step failed
	Accounts []accountReport `json:"accounts"`
}

// accountReport is the steps of one account, in the order they ran.
type accountReport struct {
	Login    string       `json:"login"`
	Identity string       `json:"identity"`
	Mailbox  string       `json:"mailbox"`
	Provider string       `json:"provider"`
	OK       bool         `json:"ok"`
	Steps    []stepResult `json:"steps"`
}

// stepResult is one step: config, token, imap, pop3 or smtp. The facts
// after Problem are set by the steps that measure them.
type stepResult struct {
	Name    string                `json:"step"`
	Status  string                `json:"status"` // pass | fail | skip
	Summary string                `json:"summary"`
	Details []string              `json:"details,omitempty"`
	Problem *diagnose.Explanation `json:"problem,omitempty"` // set when Status is fail
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

func (s *stepResult) pass(summary string) { s.Status, s.Summary = statusPass, summary }

func (s *stepResult) skip(why string) { s.Status, s.Summary = statusSkip, why }

// fail records a failed step: summary says what failed, err is explained
// for acct.
func (s *stepResult) fail(summary string, err error, acct diagnose.Account) {
	s.Status, s.Summary = statusFail, summary
	e, _ := diagnose.Explain(err, acct)
	s.Problem = &e
	if r := diagnose.ReplyOf(err); r != nil {
		s.Reply = r.Line
	}
}

// runCheck is "xoauthd check": the mailbox test of the vendor guides, with
// the cause and the fix of every failure.
func runCheck(ctx context.Context, inv *invocation) int {
	fs := inv.flagSet("[LOGIN...] [--send-test ADDRESS] [--json] [--config FILE]")
	path := configFlag(fs)
	sendTo := fs.String("send-test", "", "also send a short test message to `ADDRESS` through each account's smtp upstream")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	logins, code, ok := inv.parse(fs)
	if !ok {
		return code
	}
	if *sendTo != "" {
		addr, err := mail.ParseAddress(*sendTo)
		if err != nil || addr.Name != "" || addr.Address != *sendTo {
			return inv.usageError(fs, "--send-test %q is not a plain e-mail address like someone@example.com", *sendTo)
		}
	}
	cfg, _, ok := loadConfig(inv, *path)
	if !ok {
		return exitUsage
	}
	accounts, err := selectAccounts(cfg, logins)
	if err != nil {
		return inv.usageError(fs, "%v", err)
	}
	c := &checker{cfg: cfg, sendTo: *sendTo, now: time.Now, stepTimeout: checkStepTimeout}
	c.openStore(inv)
	report := checkReport{Config: cfg.Path, OK: true}
	for _, a := range accounts {
		ar := c.checkAccount(ctx, a)
		report.OK = report.OK && ar.OK
		report.Accounts = append(report.Accounts, ar)
	}
	if *asJSON {
		if err := writeCheckJSON(inv.stdout, report); err != nil {
			return inv.fail(err)
		}
	} else {
		writeCheckText(inv.stdout, report, useColour(inv.stdout))
	}
	if !report.OK {
		return exitFailure
	}
	return exitOK
}

// selectAccounts returns the accounts named by logins, all of them when
// none is named.
func selectAccounts(cfg *config.Config, logins []string) ([]config.Account, error) {
	if len(logins) == 0 {
		if len(cfg.Accounts) == 0 {
			return nil, fmt.Errorf("%s has no accounts to check (hint: add one under accounts:)", cfg.Path)
		}
		return cfg.Accounts, nil
	}
	var out []config.Account
	for _, l := range logins {
		a := cfg.Account(l)
		if a == nil {
			known := make([]string, 0, len(cfg.Accounts))
			for _, k := range cfg.Accounts {
				known = append(known, k.Login)
			}
			return nil, fmt.Errorf("no account with login %q in %s (known: %s)", l, cfg.Path, strings.Join(known, ", "))
		}
		out = append(out, *a)
	}
	return out, nil
}

// useColour reports whether w is a terminal that wants colours.
func useColour(w any) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	return term.IsTerminal(int(f.Fd()))
}

// checker runs the steps of one "xoauthd check".
type checker struct {
	cfg         *config.Config
	sendTo      string           // --send-test; "" for none
	now         func() time.Time // the clock for expiry texts
	stepTimeout time.Duration
	store       *tokenStore // opened by openStore
}

// checkAccount runs the steps of one account in order. A step that cannot
// run for want of an earlier one is skipped with the reason.
func (c *checker) checkAccount(ctx context.Context, a config.Account) accountReport {
	ar := accountReport{Login: a.Login, Identity: a.Identity, Mailbox: a.Mailbox, Provider: a.Provider, OK: true}
	acct := diagnose.Account{Identity: a.Identity, Mailbox: a.Mailbox}
	add := func(s stepResult) {
		ar.Steps = append(ar.Steps, s)
		ar.OK = ar.OK && s.Status != statusFail
	}
	prov, cs := c.configStep(a)
	add(cs)
	var token string
	if prov == nil {
		add(stepResult{Name: "token", Status: statusSkip, Summary: "skipped: the configuration step failed"})
	} else {
		var ts stepResult
		token, ts = c.tokenStep(ctx, a, prov, acct)
		add(ts)
	}
	for _, proto := range []string{config.ProtoIMAP, config.ProtoPOP3, config.ProtoSMTP} {
		servers := serversFor(c.cfg, proto)
		if len(servers) == 0 {
			add(stepResult{Name: proto, Status: statusSkip, Summary: "skipped: no " + proto + " server in the configuration"})
			continue
		}
		for _, srv := range servers {
			if token == "" {
				add(stepResult{Name: proto, Status: statusSkip, Summary: "skipped: no access token (see the token step)"})
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
func (c *checker) mailStep(ctx context.Context, a config.Account, prov *config.Provider, srv config.Server, token string, acct diagnose.Account) stepResult {
	s := stepResult{Name: srv.Protocol}
	addr, mode := srv.UpstreamFor(prov)
	s.Upstream = addr
	if addr == "" {
		s.fail("no upstream", fmt.Errorf("the %s server %s has no upstream for provider %s", srv.Protocol, srv.Listen, prov.Name), acct)
		return s
	}
	d, err := proxy.NewDialer(addr, proxy.TLSMode(mode), srv.CAFile)
	if err != nil {
		s.fail("cannot use upstream "+addr, err, acct)
		return s
	}
	ctx, cancel := context.WithTimeout(ctx, c.stepTimeout)
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
func (s *stepResult) failStage(err error, acct diagnose.Account) {
	var se *stageError
	what := "failed"
	if errors.As(err, &se) {
		what = se.stage + " failed"
	}
	s.fail(s.Upstream+": "+what, err, acct)
}
