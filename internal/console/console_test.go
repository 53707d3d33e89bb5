package console

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/passhash"
	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/proxy"
	"github.com/xoauthd/xoauthd/tokens"
)

// TestConsoleOff: without admin.password_hash every console path says how
// to turn the console on, and a reload that sets it turns it on.
func TestConsoleOff(t *testing.T) {
	r := newRig(t, rigOptions{noHash: true})
	b := r.browser()
	for _, path := range []string{"/", "/signin", "/account/erp-alice", "/static/console.css"} {
		a := b.get(path)
		if a.code != http.StatusNotFound || !strings.Contains(a.body, "console is off") || !strings.Contains(a.body, "xoauthd hash-password") {
			t.Errorf("GET %s: %d\n%s", path, a.code, a.body)
		}
	}
	a := b.post("/signin", url.Values{"password": {consolePass}})
	if a.code != http.StatusNotFound {
		t.Errorf("POST /signin with the console off: %d", a.code)
	}
	var err error
	if r.hash, err = passhash.Hash(consolePass); err != nil {
		t.Fatal(err)
	}
	r.setConfig(r.yaml(true))
	b.signIn()
}

// TestSignIn: the password form, the cookie's flags, wrong passwords and
// the throttling after them, and signing out.
func TestSignIn(t *testing.T) {
	r := newRig(t, rigOptions{creds: proxy.CredentialOptions{AddrLimit: 3, LoginLimit: 100}})
	b := r.browser()
	if a := b.get("/"); a.code != http.StatusSeeOther || a.location != "/signin" {
		t.Fatalf("GET / without a session: %d %q", a.code, a.location)
	}
	page := b.get("/signin")
	if page.code != http.StatusOK || !strings.Contains(page.body, `<label for="password">`) {
		t.Fatalf("sign-in page: %d\n%s", page.code, page.body)
	}
	// The form's token is missing or from another page.
	for _, token := range []string{"", "forged"} {
		a := b.post("/signin", url.Values{"csrf": {token}, "password": {consolePass}})
		if a.code != http.StatusForbidden {
			t.Errorf("sign-in with form token %q: %d", token, a.code)
		}
	}
	// Wrong passwords, then the source is throttled: even the right one is
	// refused until the window passes.
	for i := range 3 {
		page := b.get("/signin")
		a := b.post("/signin", url.Values{"csrf": {csrf(t, page.body)}, "password": {"guess"}})
		if a.code != http.StatusUnauthorized || !strings.Contains(a.body, "Wrong password") {
			t.Fatalf("wrong password %d: %d\n%s", i, a.code, a.body)
		}
	}
	page = b.get("/signin")
	a := b.post("/signin", url.Values{"csrf": {csrf(t, page.body)}, "password": {consolePass}})
	if a.code != http.StatusTooManyRequests || !strings.Contains(a.body, "Too many failed sign-ins") {
		t.Fatalf("right password while throttled: %d\n%s", a.code, a.body)
	}
	if !strings.Contains(r.logs.String(), "reason=\"throttled after failed sign-ins\"") {
		t.Error("the throttled sign-in is not logged")
	}

	r2 := newRig(t, rigOptions{})
	b2 := r2.browser()
	page = b2.get("/signin")
	a = b2.post("/signin", url.Values{"csrf": {csrf(t, page.body)}, "password": {consolePass}})
	var cookie *http.Cookie
	for _, c := range (&http.Response{Header: a.header}).Cookies() {
		if c.Name == sessionCookie {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Secure || cookie.Path != "/" {
		t.Fatalf("session cookie %+v", cookie)
	}
	home := b2.get("/")
	if home.code != http.StatusOK || !strings.Contains(home.body, "Sign out of the console") {
		t.Fatalf("accounts page: %d\n%s", home.code, home.body)
	}
	if a := b2.post("/signout", url.Values{"csrf": {"wrong"}}); a.code != http.StatusForbidden {
		t.Fatalf("sign-out with a wrong CSRF token: %d", a.code)
	}
	if a := b2.post("/signout", url.Values{"csrf": {csrf(t, home.body)}}); a.code != http.StatusSeeOther || a.location != "/signin" {
		t.Fatalf("sign-out: %d %q", a.code, a.location)
	}
	if a := b2.get("/"); a.code != http.StatusSeeOther {
		t.Fatalf("GET / after sign-out: %d", a.code)
	}
}

// TestSecureCookieOverTLS: over TLS the session cookie is Secure.
func TestSecureCookieOverTLS(t *testing.T) {
	r := newRig(t, rigOptions{})
	req := &http.Request{TLS: nil}
	if c := r.c.cookie(req, sessionCookie, "v", 0); c.Secure {
		t.Error("Secure over plain HTTP")
	}
	req.TLS = &tls.ConnectionState{}
	if c := r.c.cookie(req, sessionCookie, "v", 0); !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
		t.Errorf("cookie over TLS %+v", c)
	}
}

// TestNoSession: every action needs a session; pages send to the sign-in.
func TestNoSession(t *testing.T) {
	r := newRig(t, rigOptions{})
	b := r.browser()
	for _, path := range []string{"/account/erp-alice", "/device/x", "/test/x", "/test/x/report.json", "/identity/signout?identity=" + alice + "&provider=test"} {
		if a := b.get(path); a.code != http.StatusSeeOther || a.location != "/signin" {
			t.Errorf("GET %s: %d %q", path, a.code, a.location)
		}
	}
	form := url.Values{"identity": {alice}, "provider": {"test"}, "login": {aliceLogin}, "csrf": {"x"}}
	for _, path := range []string{"/identity/connect", "/identity/device", "/identity/signout", "/test", "/signout"} {
		if a := b.post(path, form); a.code != http.StatusUnauthorized || !strings.Contains(a.body, "not signed in") {
			t.Errorf("POST %s: %d\n%s", path, a.code, a.body)
		}
	}
}

// TestCSRF: every state-changing request without the session's token is
// refused and changes nothing.
func TestCSRF(t *testing.T) {
	r := newRig(t, rigOptions{})
	b := r.browser()
	token := b.signIn()
	b.comeBack(r.authorize(b.connect(token, alice)))
	for _, path := range []string{"/identity/connect", "/identity/device", "/identity/signout", "/test"} {
		for _, bad := range []url.Values{{}, {"csrf": {"forged"}}, {"csrf": {token + "x"}}} {
			form := url.Values{"identity": {alice}, "provider": {"test"}, "login": {aliceLogin}}
			for k, v := range bad {
				form[k] = v
			}
			if a := b.post(path, form); a.code != http.StatusForbidden || !strings.Contains(a.body, "nothing was done") {
				t.Errorf("POST %s with %v: %d\n%s", path, bad, a.code, a.body)
			}
		}
	}
	if _, ok, _ := r.store.Status(alice, time.Now()); !ok {
		t.Fatal("a refused sign-out removed the tokens")
	}
	r.c.mu.Lock()
	n := len(r.c.runs) + len(r.c.devices)
	r.c.mu.Unlock()
	if n != 0 {
		t.Fatalf("refused requests started %d runs or device sign-ins", n)
	}
}

// authorize plays the identity provider's sign-in for an authorize URL and
// returns where it sends the browser back.
func (r *rig) authorize(authURL string) string {
	r.t.Helper()
	redirect, err := r.rec.Authorize(authURL)
	if err != nil {
		r.t.Fatalf("authorize: %v", err)
	}
	return redirect
}

// TestConnect: Connect sends the browser to the provider with PKCE,
// login_hint and prompt=select_account and the console's own localhost
// address; the redirect back stores the tokens and the accounts page says so.
func TestConnect(t *testing.T) {
	r := newRig(t, rigOptions{})
	b := r.browser()
	token := b.signIn()
	authURL := b.connect(token, alice)
	u, _ := url.Parse(authURL)
	q := u.Query()
	want := map[string]string{"login_hint": alice, "prompt": "select_account", "code_challenge_method": "S256",
		"client_id": clientID, "redirect_uri": r.base + "/", "response_type": "code"}
	for k, v := range want {
		if q.Get(k) != v {
			t.Errorf("authorize %s = %q, want %q", k, q.Get(k), v)
		}
	}
	redirect := r.authorize(authURL)
	if !strings.HasPrefix(redirect, r.base+"/?") {
		t.Fatalf("redirect %q is not the console", redirect)
	}
	a := b.comeBack(redirect)
	if a.code != http.StatusOK || !strings.Contains(a.body, "Signed in as "+alice) || !strings.Contains(a.body, `http-equiv="refresh" content="0; url=/"`) {
		t.Fatalf("redirect back: %d\n%s", a.code, a.body)
	}
	st, ok, err := r.store.Status(alice, time.Now())
	if err != nil || !ok || st.State != tokens.StateValid || !strings.EqualFold(st.User, alice) {
		t.Fatalf("stored %+v %v %v", st, ok, err)
	}
	home := b.get("/")
	for _, s := range []string{"Signed in as " + alice + " (provider test, authcode flow)", "Signed in as " + alice + ". The access token expires", "Sign in again", "Sign out…"} {
		if !strings.Contains(home.body, s) {
			t.Errorf("accounts page lacks %q:\n%s", s, home.body)
		}
	}
	// The state was single-use: the same redirect again is refused.
	if a := b.comeBack(redirect); a.code != http.StatusBadRequest || !strings.Contains(a.body, "state mismatch") {
		t.Fatalf("replayed redirect: %d\n%s", a.code, a.body)
	}
}

// TestConnectStateMismatch: a redirect whose state no Connect sent is
// refused and stores nothing.
func TestConnectStateMismatch(t *testing.T) {
	r := newRig(t, rigOptions{})
	b := r.browser()
	token := b.signIn()
	redirect := r.authorize(b.connect(token, alice))
	forged, _ := url.Parse(redirect)
	q := forged.Query()
	q.Set("state", "forged")
	forged.RawQuery = q.Encode()
	a := b.comeBack(forged.String())
	if a.code != http.StatusBadRequest || !strings.Contains(a.body, "state mismatch") || !strings.Contains(a.body, "nothing was stored") {
		t.Fatalf("forged state: %d\n%s", a.code, a.body)
	}
	if _, ok, _ := r.store.Status(alice, time.Now()); ok {
		t.Fatal("a forged redirect stored tokens")
	}
	// The provider's refusal (the person declined) is explained.
	redirect = r.authorize(b.connect(token, alice))
	declined, _ := url.Parse(redirect)
	q = declined.Query()
	q.Del("code")
	q.Set("error", "access_denied")
	q.Set("error_description", "AADSTS65004: User declined to consent to access the app.")
	declined.RawQuery = q.Encode()
	a = b.comeBack(declined.String())
	if a.code != http.StatusBadRequest || !strings.Contains(a.body, "Sign-in of "+alice+" failed") || !strings.Contains(a.body, "AADSTS65004") {
		t.Fatalf("declined: %d\n%s", a.code, a.body)
	}
	if _, ok, _ := r.store.Status(alice, time.Now()); ok {
		t.Fatal("a declined sign-in stored tokens")
	}
}

// TestConnectWrongAccount: signing in as another account than the
// identity is refused with xoauthd login's message; what was stored stays.
func TestConnectWrongAccount(t *testing.T) {
	r := newRig(t, rigOptions{})
	b := r.browser()
	token := b.signIn()
	b.comeBack(r.authorize(b.connect(token, alice)))
	before, _, _ := r.store.Status(alice, time.Now())
	r.idp.SetSignedInUser(bob)
	a := b.comeBack(r.authorize(b.connect(token, alice)))
	wantMsg := (&tokens.IdentityMismatchError{Identity: alice, SignedIn: bob}).Error()
	if a.code != http.StatusBadRequest || !strings.Contains(a.body, "Sign-in of "+alice+" failed: "+htmlEscape(wantMsg)) {
		t.Fatalf("wrong account: %d\n%s\nwant %q", a.code, a.body, wantMsg)
	}
	after, _, _ := r.store.Status(alice, time.Now())
	if after != before {
		t.Fatalf("the stored token changed: %+v → %+v", before, after)
	}
	home := b.get("/")
	if !strings.Contains(home.body, htmlEscape(wantMsg)) {
		t.Errorf("the accounts page does not say why:\n%s", home.body)
	}
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}

// TestConnectNotLocalhost: the provider sends the browser back only to
// http://localhost, so a console opened as 127.0.0.1 says how to open it.
func TestConnectNotLocalhost(t *testing.T) {
	r := newRig(t, rigOptions{})
	b := r.browser()
	r.base = r.srv.URL // http://127.0.0.1:PORT
	token := b.signIn()
	a := b.post("/identity/connect", url.Values{"csrf": {token}, "identity": {alice}, "provider": {"test"}})
	_, port, _ := strings.Cut(strings.TrimPrefix(r.srv.URL, "http://"), ":")
	if a.code != http.StatusBadRequest || !strings.Contains(a.body, "Open the console as http://localhost:"+port+"/") ||
		!strings.Contains(a.body, `action="/identity/device"`) || !strings.Contains(a.body, "Sign "+alice+" in with a code") {
		t.Fatalf("connect from 127.0.0.1: %d\n%s", a.code, a.body)
	}
	// The offered device sign-in starts.
	if d := b.post("/identity/device", url.Values{"csrf": {csrf(t, a.body)}, "identity": {alice}, "provider": {"test"}}); d.code != http.StatusSeeOther {
		t.Fatalf("device sign-in from the refusal page: %d\n%s", d.code, d.body)
	}
}

// TestUnknownIdentity: actions on an identity that no account uses are
// refused, as are those for a client-credentials identity that needs none.
func TestUnknownIdentity(t *testing.T) {
	r := newRig(t, rigOptions{})
	b := r.browser()
	token := b.signIn()
	for _, path := range []string{"/identity/connect", "/identity/device", "/identity/signout"} {
		for _, id := range [][2]string{{"nobody@contoso.test", "test"}, {alice, "app"}, {alice, "nope"}} {
			a := b.post(path, url.Values{"csrf": {token}, "identity": {id[0]}, "provider": {id[1]}})
			if a.code != http.StatusNotFound || !strings.Contains(a.body, "nothing was done") {
				t.Errorf("POST %s for %v: %d\n%s", path, id, a.code, a.body)
			}
		}
	}
	if a := b.get("/identity/signout?identity=nobody@contoso.test&provider=test"); a.code != http.StatusNotFound {
		t.Errorf("confirm page for an unknown identity: %d", a.code)
	}
	a := b.post("/identity/connect", url.Values{"csrf": {token}, "identity": {appMailbox}, "provider": {"app"}})
	if a.code != http.StatusBadRequest || !strings.Contains(a.body, "no login is needed") {
		t.Errorf("connect for client credentials: %d\n%s", a.code, a.body)
	}
	home := b.get("/")
	idx := strings.Index(home.body, appMailbox+` <span class="muted">(app)`)
	if idx < 0 {
		t.Fatalf("no identity card for %s:\n%s", appMailbox, home.body)
	}
	card := home.body[idx:]
	card = card[:strings.Index(card, "</article>")]
	if !strings.Contains(card, "No sign-in needed") || strings.Contains(card, "/identity/connect") || strings.Contains(card, "/identity/device") {
		t.Errorf("client-credentials identity card:\n%s", card)
	}
}

// TestDeviceSignIn: the page shows the code and the address and follows
// the sign-in to its end, both when it completes and when it is declined.
func TestDeviceSignIn(t *testing.T) {
	r := newRig(t, rigOptions{})
	b := r.browser()
	token := b.signIn()
	start := func() (string, string) {
		a := b.post("/identity/device", url.Values{"csrf": {token}, "identity": {alice}, "provider": {"test"}})
		if a.code != http.StatusSeeOther || !strings.HasPrefix(a.location, "/device/") {
			t.Fatalf("device start: %d %q\n%s", a.code, a.location, a.body)
		}
		page := b.get(a.location)
		m := regexpCode.FindStringSubmatch(page.body)
		if page.code != http.StatusOK || m == nil || !strings.Contains(page.body, "data-live=") || !strings.Contains(page.body, `http-equiv="refresh"`) {
			t.Fatalf("device page: %d\n%s", page.code, page.body)
		}
		return a.location, m[1]
	}
	loc, code := start()
	if err := r.idp.DeclineDevice(code); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Minute, "the declined sign-in to show", func() bool {
		return strings.Contains(b.get(loc+"?part=live").body, "Sign-in of "+alice+" failed")
	})
	loc, code = start()
	if err := r.idp.ApproveDevice(code, alice); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Minute, "the sign-in to show", func() bool {
		return strings.Contains(b.get(loc+"?part=live").body, "Signed in as "+alice)
	})
	page := b.get(loc)
	if strings.Contains(page.body, "data-live=") || strings.Contains(page.body, `http-equiv="refresh"`) {
		t.Errorf("a finished device page still updates itself:\n%s", page.body)
	}
	if st, ok, _ := r.store.Status(alice, time.Now()); !ok || st.Flow != "device" {
		t.Fatalf("stored %+v %v", st, ok)
	}
	if a := b.get("/device/unknown"); a.code != http.StatusNotFound {
		t.Errorf("unknown device sign-in: %d", a.code)
	}
}

// TestIdentitySignOut: Sign out asks first, then removes the tokens.
func TestIdentitySignOut(t *testing.T) {
	r := newRig(t, rigOptions{})
	b := r.browser()
	token := b.signIn()
	b.comeBack(r.authorize(b.connect(token, alice)))
	confirm := b.get("/identity/signout?identity=" + url.QueryEscape(alice) + "&provider=test")
	if confirm.code != http.StatusOK || !strings.Contains(confirm.body, "Remove the stored tokens of <strong>"+alice) {
		t.Fatalf("confirmation: %d\n%s", confirm.code, confirm.body)
	}
	if _, ok, _ := r.store.Status(alice, time.Now()); !ok {
		t.Fatal("the confirmation page removed the tokens")
	}
	a := b.post("/identity/signout", url.Values{"csrf": {csrf(t, confirm.body)}, "identity": {alice}, "provider": {"test"}})
	if a.code != http.StatusSeeOther {
		t.Fatalf("sign out: %d\n%s", a.code, a.body)
	}
	if _, ok, _ := r.store.Status(alice, time.Now()); ok {
		t.Fatal("the tokens are still stored")
	}
	home := b.get("/")
	if !strings.Contains(home.body, "Removed the tokens of "+alice) || !strings.Contains(home.body, "Not signed in: press Connect.") {
		t.Errorf("accounts page after sign-out:\n%s", home.body)
	}
}

// TestReloadRemovesAccount: an account's page open while a reload removes
// the account says it is gone, and its actions are refused.
func TestReloadRemovesAccount(t *testing.T) {
	r := newRig(t, rigOptions{})
	b := r.browser()
	token := b.signIn()
	if a := b.get("/account/" + aliceLogin); a.code != http.StatusOK || !strings.Contains(a.body, alice) {
		t.Fatalf("account page: %d\n%s", a.code, a.body)
	}
	r.setConfig(r.yaml(false))
	a := b.get("/account/" + aliceLogin)
	if a.code != http.StatusNotFound || !strings.Contains(a.body, "a reload may have removed it") {
		t.Fatalf("account page after the reload: %d\n%s", a.code, a.body)
	}
	if a := b.post("/test", url.Values{"csrf": {token}, "login": {aliceLogin}}); a.code != http.StatusNotFound {
		t.Errorf("test of the removed account: %d", a.code)
	}
	if a := b.post("/identity/connect", url.Values{"csrf": {token}, "identity": {alice}, "provider": {"test"}}); a.code != http.StatusNotFound {
		t.Errorf("connect of the removed account's identity: %d", a.code)
	}
	if home := b.get("/"); strings.Contains(home.body, aliceLogin) || !strings.Contains(home.body, "erp-bob") {
		t.Errorf("the accounts page does not follow the reload:\n%s", home.body)
	}
}

// TestRecentFailures: failed mail logins of an account, from the fronts'
// audit lines, appear on its card with their explanation; logins that are
// not configured are not kept.
func TestRecentFailures(t *testing.T) {
	r := newRig(t, rigOptions{})
	log := slog.New(r.c.opts.Events.Handler(slog.NewTextHandler(io.Discard, nil)))
	conn := log.With("cid", 7, "proto", "imap", "remote", "127.0.0.1:5555")
	(*proxy.Gateway)(nil).AuditLogin(ctxT(t), conn, proxy.LoginAudit{Result: proxy.LoginFailure, Login: aliceLogin, Identity: alice,
		Reason: "token needs a new login", Attrs: []slog.Attr{slog.String("why", "the refresh token was revoked: sign in again")}})
	(*proxy.Gateway)(nil).AuditLogin(ctxT(t), conn, proxy.LoginAudit{Result: proxy.LoginSuccess, Login: aliceLogin, Identity: alice})
	(*proxy.Gateway)(nil).AuditLogin(ctxT(t), conn, proxy.LoginAudit{Result: proxy.LoginFailure, Login: "intruder", Reason: "bad local credentials"})
	b := r.browser()
	b.signIn()
	home := b.get("/")
	if !strings.Contains(home.body, "Recent failed logins (1)") || !strings.Contains(home.body, "imap: token needs a new login") ||
		!strings.Contains(home.body, "the refresh token was revoked: sign in again") {
		t.Errorf("accounts page:\n%s", home.body)
	}
	if len(r.c.opts.Events.Recent("intruder")) != 0 {
		t.Error("a login that is not configured was kept")
	}
}

// TestStatic: the embedded assets are served, to anyone.
func TestStatic(t *testing.T) {
	r := newRig(t, rigOptions{})
	b := r.browser()
	for _, p := range []string{"/static/console.css", "/static/console.js"} {
		if a := b.get(p); a.code != http.StatusOK || len(a.body) < 100 {
			t.Errorf("GET %s: %d", p, a.code)
		}
	}
	a := b.get("/signin")
	if csp := a.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || a.header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("headers %v", a.header)
	}
}

var regexpCode = regexp.MustCompile(`<p class="code">([A-Z0-9-]+)</p>`)

// TestPasswordChangeEndsSessions: a reload that changes the console's
// password ends the sessions signed in with the old one.
func TestPasswordChangeEndsSessions(t *testing.T) {
	r := newRig(t, rigOptions{})
	b := r.browser()
	b.signIn()
	r.setConfig(r.yaml(true)) // the same hash: the session stays
	if a := b.get("/"); a.code != http.StatusOK {
		t.Fatalf("after a reload that kept the password: %d", a.code)
	}
	var err error
	if r.hash, err = passhash.Hash("a new console password"); err != nil {
		t.Fatal(err)
	}
	r.setConfig(r.yaml(true))
	if a := b.get("/"); a.code != http.StatusSeeOther || a.location != "/signin" {
		t.Fatalf("after the password changed: %d %q", a.code, a.location)
	}
}

// TestEvictOldest: the bounded maps drop their oldest entries first.
func TestEvictOldest(t *testing.T) {
	base := time.Now()
	m := map[string]time.Time{"a": base.Add(2), "b": base, "c": base.Add(1)}
	evictOldest(m, 2, func(v time.Time) time.Time { return v })
	if len(m) != 1 || m["a"].IsZero() {
		t.Fatalf("left %v, want only a", m)
	}
	evictOldest(m, 5, func(v time.Time) time.Time { return v })
	if len(m) != 1 {
		t.Fatalf("removed below the bound: %v", m)
	}
}

// TestNoStore: without a token store, the actions that change it are
// refused and the page still shows the accounts.
func TestNoStore(t *testing.T) {
	r := newRig(t, rigOptions{noStore: true})
	b := r.browser()
	token := b.signIn()
	for _, path := range []string{"/identity/connect", "/identity/device", "/identity/signout"} {
		a := b.post(path, url.Values{"csrf": {token}, "identity": {alice}, "provider": {"test"}})
		if a.code != http.StatusServiceUnavailable || !strings.Contains(a.body, "no token store") {
			t.Errorf("POST %s: %d\n%s", path, a.code, a.body)
		}
	}
	if home := b.get("/"); !strings.Contains(home.body, aliceLogin) || !strings.Contains(home.body, "Not signed in") {
		t.Errorf("accounts page:\n%s", home.body)
	}
}

// TestListeners: the accounts page lists each listener with its upstream
// and the providers that use it.
func TestListeners(t *testing.T) {
	r := newRig(t, rigOptions{})
	b := r.browser()
	b.signIn()
	home := b.get("/")
	for _, want := range []string{"<td>imap</td><td>127.0.0.1:11143</td><td>127.0.0.1:1 (app, test)</td>",
		"<td>smtp</td><td>127.0.0.1:11587</td><td>127.0.0.1:3 (app, test)</td>"} {
		if !strings.Contains(home.body, want) {
			t.Errorf("accounts page lacks %q:\n%s", want, home.body)
		}
	}
}

// TestLimits: a form beyond the bound is refused unread, and the sessions
// kept are bounded (the least recently used one goes).
func TestLimits(t *testing.T) {
	r := newRig(t, rigOptions{})
	b := r.browser()
	page := b.get("/signin")
	huge := url.Values{"csrf": {csrf(t, page.body)}, "password": {strings.Repeat("x", 2*maxFormBytes)}}
	if a := b.post("/signin", huge); a.code != http.StatusBadRequest || !strings.Contains(a.body, "could not be read") {
		t.Fatalf("a form of %d bytes: %d\n%s", 2*maxFormBytes, a.code, a.body)
	}
	first := r.browser()
	first.signIn()
	for range maxSessions {
		r.c.newSession()
	}
	r.c.mu.Lock()
	n := len(r.c.sessions)
	r.c.mu.Unlock()
	if n != maxSessions {
		t.Fatalf("%d sessions kept, want %d", n, maxSessions)
	}
	if a := first.get("/"); a.code != http.StatusSeeOther {
		t.Fatalf("the least recently used session survived: %d", a.code)
	}
}
