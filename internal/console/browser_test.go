package console

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's chromium, which .ci/run installs.
const chromiumPath = "/usr/bin/chromium"

// stepTimeout bounds one step of the browser test (a page and what it
// waits for).
const stepTimeout = time.Minute

// artifactDir is where the browser test writes its screenshots:
// $XOAUTHD_ARTIFACTS/console when set (CI keeps that folder), else a test
// directory that is copied to the system's temporary directory when the
// test fails (the log names it).
func artifactDir(t *testing.T) string {
	if dir := os.Getenv("XOAUTHD_ARTIFACTS"); dir != "" {
		dir = filepath.Join(dir, "console")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	dir := t.TempDir()
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		keep, err := os.MkdirTemp("", "xoauthd-console-artifacts-")
		if err == nil {
			err = os.CopyFS(keep, os.DirFS(dir))
		}
		if err != nil {
			t.Logf("keeping the screenshots: %v", err)
			return
		}
		t.Logf("screenshots kept in %s", keep)
	})
	return dir
}

// newChrome starts headless Chromium for the test.
func newChrome(t *testing.T) context.Context {
	t.Helper()
	if _, err := exec.LookPath(chromiumPath); err != nil {
		if testing.Short() {
			t.Skipf("skipping the browser test in -short mode: %v", err)
		}
		t.Fatalf("%v (hint: apt-get install chromium, or run with -short to skip the browser test)", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox, // CI runs as root, where Chromium's sandbox cannot start
		chromedp.WindowSize(1000, 900),
		chromedp.Flag("lang", "en-US"),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); acancel() })
	// The first call starts the browser, for as long as ctx lives: it gets
	// no timeout of its own (each step below has one).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// screenshot writes the whole page to dir/name.
func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100 is PNG; less is JPEG
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestBrowser drives the console in headless Chromium the way an admin
// does: sign in, press Connect for alice, sign in at the identity provider
// and come back signed in, press Test and see every step pass against
// Dovecot; then the sign-in is revoked at the identity provider and Test
// fails with the cause and the fix. It writes screenshots of the accounts
// page (also at a phone's width, where nothing may run off the side) and
// of the failed test (see artifactDir). Last, with JavaScript off, Test
// still ends on its own page (it reloads itself).
func TestBrowser(t *testing.T) {
	r := newRig(t, rigOptions{dovecot: true})
	ctx := newChrome(t)
	dir := artifactDir(t)
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) string {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, stepTimeout)
		defer cancel()
		err := chromedp.Do(sctx, steps...)
		if err == nil {
			var text string
			text, err = chromedp.Run(sctx, chromedp.Text(chromedp.CSS("#main")))
			if err == nil {
				return text
			}
		}
		html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
		screenshot(t, ctx, dir, "failed.png")
		t.Fatalf("%s: %v\npage:\n%s", what, err, html)
		return ""
	}
	connect := `//article[contains(@class,"identity")][.//h3[contains(., "` + alice + `")]]//button[normalize-space()="Connect"]`
	finished := `//p[contains(@class,"notice") and (contains(., "Every step passed") or contains(., "A step failed"))]`
	testAlice := `//article[@id="account-` + aliceLogin + `"]//button[starts-with(normalize-space(), "Test")]`
	run("sign in",
		chromedp.Navigate(r.base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#password`)),
		chromedp.SendKeys(chromedp.CSS(`#password`), consolePass),
		chromedp.Click(chromedp.CSS(`button[type=submit].primary`)),
		chromedp.WaitVisible(`//h1[normalize-space()="Accounts"]`),
	)
	text := run("connect",
		chromedp.Click(connect),
		chromedp.WaitVisible(`//p[contains(@class,"notice") and contains(., "Signed in as `+alice+` (provider test")]`),
	)
	if !strings.Contains(text, "Signed in as "+alice+". The access token expires") {
		t.Fatalf("the accounts page does not show alice signed in:\n%s", text)
	}
	screenshot(t, ctx, dir, "console-accounts.png")

	// On a phone's width nothing runs off the side of the page.
	run("phone width", chromedp.EmulateViewport(390, 844), chromedp.Reload())
	screenshot(t, ctx, dir, "console-accounts-phone.png")
	fits, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth <= window.innerWidth`))
	if err != nil || !fits {
		t.Errorf("the accounts page is wider than a phone's screen (%v)", err)
	}
	run("desktop width", chromedp.EmulateViewport(1000, 900), chromedp.Navigate(r.base+"/"))

	text = run("test",
		chromedp.Click(testAlice),
		chromedp.WaitVisible(finished),
	)
	for _, step := range []string{"config", "token", "imap", "pop3", "smtp"} {
		if !strings.Contains(text, "✓ "+step+" passed") && !strings.Contains(text, "✓\n"+step+" passed") && !strings.Contains(text, step+" passed") {
			t.Errorf("step %s did not pass:\n%s", step, text)
		}
	}
	if !strings.Contains(text, "Every step passed") {
		t.Fatalf("the test did not pass:\n%s", text)
	}

	r.idp.RevokeUser(alice)
	text = run("test after the revocation",
		chromedp.Navigate(r.base+"/"),
		chromedp.Click(testAlice),
		chromedp.WaitVisible(finished),
	)
	for _, s := range []string{"A step failed", "token failed", "Cause:", "Fix:", "AADSTS700082"} {
		if !strings.Contains(text, s) {
			t.Errorf("the failed test page lacks %q:\n%s", s, text)
		}
	}
	screenshot(t, ctx, dir, "console-failed-test.png")

	// Without JavaScript the test page reloads itself until the test ends.
	noScript := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
		return err
	})
	if r.liveFetches.Load() == 0 {
		t.Error("with JavaScript on, the test page did not update itself by script")
	}
	fetched := r.liveFetches.Load()
	text = run("test without JavaScript",
		noScript,
		chromedp.Navigate(r.base+"/account/"+aliceLogin),
		chromedp.Click(`//button[normalize-space()="Test"]`),
		chromedp.WaitVisible(finished),
	)
	if !strings.Contains(text, "A step failed") {
		t.Errorf("the test without JavaScript did not end as before:\n%s", text)
	}
	if n := r.liveFetches.Load(); n != fetched {
		t.Errorf("%d live parts were fetched with JavaScript off", n-fetched)
	}
	for _, name := range []string{"console-accounts.png", "console-failed-test.png"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Size() < 1000 {
			t.Errorf("screenshot %s: %v", name, errors.Join(err, fs.ErrInvalid))
		}
	}
}
