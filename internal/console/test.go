package console

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/mail"
	"strings"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/check"
	"github.com/xoauthd/xoauthd/tokens"
)

// Bounds of the test runs.
const (
	// maxRuns bounds the test runs kept (running and finished); the
	// oldest goes first.
	maxRuns = 16
	// testRefresh is how often a running test's page reloads without
	// JavaScript.
	testRefresh = 2
)

// testRun is one press of Test (one account) or Test all.
type testRun struct {
	id      string
	started time.Time
	sendTo  string
	all     bool   // Test all; else login
	login   string // the one account tested
	// Under Console.mu: the accounts done so far and the one running.
	report  check.Report
	current *check.AccountReport // nil between accounts and when done
	pending []string             // logins not started yet
	done    bool
}

// testStart runs check's steps for one account (login) or all of them
// (all=1) in the background and shows them live.
func (c *Console) testStart(w http.ResponseWriter, r *http.Request, s *session) {
	cfg := c.opts.Config()
	sendTo := strings.TrimSpace(r.PostForm.Get("send_to"))
	if sendTo != "" {
		addr, err := mail.ParseAddress(sendTo)
		if err != nil || addr.Name != "" || addr.Address != sendTo {
			c.fail(w, r, s, http.StatusBadRequest, fmt.Sprintf("%q is not a plain e-mail address like someone@example.com; no test was run.", sendTo))
			return
		}
	}
	var accounts []config.Account
	if r.PostForm.Get("all") != "" {
		accounts = cfg.Accounts
	} else if a := cfg.Account(r.PostForm.Get("login")); a != nil {
		accounts = []config.Account{*a}
	}
	if len(accounts) == 0 {
		c.fail(w, r, s, http.StatusNotFound, fmt.Sprintf("There is no account %q in the configuration in force (a reload may have removed it); no test was run.", r.PostForm.Get("login")))
		return
	}
	run := &testRun{id: rand.Text(), started: c.opts.Now(), sendTo: sendTo, report: check.Report{Config: cfg.Path, OK: true},
		all: r.PostForm.Get("all") != "", login: accounts[0].Login}
	for _, a := range accounts {
		run.pending = append(run.pending, a.Login)
	}
	c.mu.Lock()
	evictOldest(c.runs, maxRuns, func(r *testRun) time.Time { return r.started })
	c.runs[run.id] = run
	c.mu.Unlock()
	c.log.Info("console test started", "logins", strings.Join(run.pending, ","), "send_test", sendTo != "")
	checker := c.checker(cfg, sendTo)
	c.wg.Go(func() { c.runTest(run, checker, accounts) })
	http.Redirect(w, r, "/test/"+run.id, http.StatusSeeOther)
}

// checker builds package check's Checker over the configuration in force
// and the daemon's token manager.
func (c *Console) checker(cfg *config.Config, sendTo string) *check.Checker {
	store := c.opts.Store
	return check.New(check.Options{
		Config: cfg,
		Tokens: func(p *config.Provider) check.Tokens {
			if c.opts.Tokens != nil {
				return c.opts.Tokens
			}
			return tokens.NewManager(store, func(string) (*config.Provider, error) { return p, nil }, tokens.Options{})
		},
		StoreMissing: store == nil && c.opts.Tokens == nil,
		Dialer:       c.opts.Dialer,
		SendTo:       sendTo,
		Now:          c.opts.Now,
	})
}

// runTest runs the accounts' steps in order, publishing each step as it ends.
func (c *Console) runTest(run *testRun, checker *check.Checker, accounts []config.Account) {
	ctx, cancel := context.WithTimeout(c.ctx, testTimeout)
	defer cancel()
	for _, a := range accounts {
		c.mu.Lock()
		run.pending = run.pending[1:]
		run.current = &check.AccountReport{Login: a.Login, Identity: a.Identity, Mailbox: a.Mailbox, Provider: a.Provider, OK: true}
		c.mu.Unlock()
		ar := checker.CheckAccount(ctx, a, func(st check.Step) {
			c.mu.Lock()
			defer c.mu.Unlock()
			run.current.Steps = append(run.current.Steps, st)
			run.current.OK = run.current.OK && st.Status != check.StatusFail
		})
		c.mu.Lock()
		run.current = nil
		run.report.Accounts = append(run.report.Accounts, ar)
		run.report.OK = run.report.OK && ar.OK
		c.mu.Unlock()
		c.log.Info("console test", "login", a.Login, "result", map[bool]string{true: "pass", false: "fail"}[ar.OK])
	}
	c.mu.Lock()
	run.done = true
	c.mu.Unlock()
}

// testView is the data of test.html.
type testView struct {
	ID       string
	Accounts []check.AccountReport // done ones, then the running one
	Running  string                // the login whose steps are running
	Pending  []string
	Done, OK bool
	SendTo   string
	All      bool   // Test again tests all accounts
	Login    string // else this one
}

// testPage shows a run's steps so far; it updates itself until the run ends.
func (c *Console) testPage(w http.ResponseWriter, r *http.Request, s *session) {
	v, ok := c.testView(r.PathValue("id"))
	if !ok {
		c.fail(w, r, s, http.StatusNotFound, "This test run is not known (it was long ago, or xoauthd restarted). Press Test again.")
		return
	}
	p := page{Title: "Test", CSRF: s.csrf, SignedIn: true, Data: v}
	if !v.Done {
		p.Refresh = testRefresh
	}
	c.render(w, r, http.StatusOK, "test.html", p)
}

func (c *Console) testView(id string) (testView, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	run := c.runs[id]
	if run == nil {
		return testView{}, false
	}
	v := testView{ID: run.id, Done: run.done, OK: run.report.OK, SendTo: run.sendTo, All: run.all, Login: run.login,
		Pending: append([]string(nil), run.pending...)}
	v.Accounts = append(v.Accounts, run.report.Accounts...)
	if run.current != nil {
		cur := *run.current
		cur.Steps = append([]check.Step(nil), cur.Steps...)
		v.Accounts = append(v.Accounts, cur)
		v.Running = cur.Login
	}
	return v, true
}

// testJSON serves a finished run's report as "xoauthd check --json" prints it.
func (c *Console) testJSON(w http.ResponseWriter, r *http.Request, s *session) {
	c.mu.Lock()
	run := c.runs[r.PathValue("id")]
	var report check.Report
	done := run != nil && run.done
	if done {
		report = run.report
	}
	c.mu.Unlock()
	if !done {
		c.fail(w, r, s, http.StatusNotFound, "This test run is not known or not finished yet.")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="xoauthd-check.json"`)
	if err := check.WriteJSON(w, report); err != nil {
		c.log.Warn("writing a test report", "err", err)
	}
}
