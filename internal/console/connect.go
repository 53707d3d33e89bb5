package console

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/tokens"
)

// Bounds of the sign-ins in progress.
const (
	// pendingLifetime is how long a Connect waits for the browser to come
	// back (Microsoft's authorization codes live about 10 minutes).
	pendingLifetime = 15 * time.Minute
	// maxPending bounds the Connects in progress; the oldest goes first.
	maxPending = 32
	// maxDevices bounds the device sign-ins kept (running and finished).
	maxDevices = 16
	// deviceRefresh is how often the device page reloads without JavaScript.
	deviceRefresh = 3
)

// pendingLogin is a Connect waiting for the browser to come back.
type pendingLogin struct {
	login   *tokens.AuthCodeLogin
	session string // the session that started it, for the notice
	started time.Time
}

// deviceLogin is a device code sign-in shown on a page.
type deviceLogin struct {
	id       string
	identity string
	provider string
	started  time.Time
	code     *tokens.DeviceLogin
	// Set when the sign-in ends (under Console.mu).
	done bool
	ok   bool
	text string
}

// identityFromForm finds the identity named by the request (identity and
// provider) among the accounts of the configuration in force.
func (c *Console) identityFromForm(w http.ResponseWriter, r *http.Request, s *session) (string, *config.Provider, bool) {
	identity := strings.TrimSpace(r.FormValue("identity"))
	provider := r.FormValue("provider")
	cfg := c.opts.Config()
	for _, a := range cfg.Accounts {
		if strings.EqualFold(a.Identity, identity) && a.Provider == provider {
			if p := cfg.Providers[provider]; p != nil {
				return a.Identity, p, true
			}
		}
	}
	c.fail(w, r, s, http.StatusNotFound, fmt.Sprintf("No account of the configuration in force uses identity %q with provider %q (a reload may have removed it); nothing was done.", identity, provider))
	return "", nil, false
}

// identityAndStore is identityFromForm for an action that changes what is
// stored: it also answers when there is no token store.
func (c *Console) identityAndStore(w http.ResponseWriter, r *http.Request, s *session) (string, *config.Provider, tokens.Backend, bool) {
	identity, prov, ok := c.identityFromForm(w, r, s)
	if !ok {
		return "", nil, nil, false
	}
	if c.opts.Store == nil {
		c.fail(w, r, s, http.StatusServiceUnavailable, "This xoauthd has no token store to keep a sign-in in.")
		return "", nil, nil, false
	}
	return identity, prov, c.opts.Store, true
}

// redirectURI is where the identity provider sends the browser back: the
// console's own address, which must be http://localhost:PORT/ to match
// the app registration's http://localhost (Microsoft ignores the port of
// a localhost redirect URI, not its host or scheme). ok is false when the
// browser reached the console under another name.
func redirectURI(r *http.Request) (string, bool) {
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil {
		host, port = r.Host, ""
	}
	if r.TLS != nil || !strings.EqualFold(host, "localhost") {
		return "", false
	}
	if port == "" {
		return "http://localhost/", true
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return "", false
	}
	return "http://localhost:" + port + "/", true
}

// connect starts the authorization code flow: the browser goes to the
// identity provider and comes back to the console (see callback).
func (c *Console) connect(w http.ResponseWriter, r *http.Request, s *session) {
	identity, prov, _, ok := c.identityAndStore(w, r, s)
	if !ok {
		return
	}
	redirect, ok := redirectURI(r)
	if !ok {
		_, port, _ := net.SplitHostPort(r.Host)
		text := fmt.Sprintf("The identity provider sends the browser back only to http://localhost (the redirect URI of the app registration), "+
			"and this page was opened as %s://%s. Open the console as http://localhost:%s/ and press Connect again, "+
			"or sign in with a code, which works from any device.", scheme(r), r.Host, orDefault(port, "80"))
		c.render(w, r, http.StatusBadRequest, "message.html", page{Title: "Connect cannot come back here", CSRF: s.csrf, SignedIn: true,
			Data: message{Text: text, Next: "/", DeviceIdentity: identity, DeviceProvider: prov.Name}})
		return
	}
	l, err := tokens.NewAuthCodeLogin(prov, identity, redirect)
	if err != nil {
		c.fail(w, r, s, http.StatusBadRequest, "Connect cannot start: "+err.Error())
		return
	}
	now := c.opts.Now()
	c.mu.Lock()
	for st, p := range c.pending {
		if now.Sub(p.started) > pendingLifetime {
			delete(c.pending, st)
		}
	}
	evictOldest(c.pending, maxPending, func(p *pendingLogin) time.Time { return p.started })
	c.pending[l.State()] = &pendingLogin{login: l, session: s.id, started: now}
	c.mu.Unlock()
	c.log.Info("console sign-in started", "identity", identity, "provider", prov.Name, "flow", config.FlowAuthCode)
	http.Redirect(w, r, l.URL(), http.StatusSeeOther)
}

// callback is the identity provider's redirect back to the console. It
// comes from another site, so the SameSite=Strict session cookie is not
// sent: the state parameter, a secret of the Connect that a signed-in
// session started, is what admits it, once. The page then leads back to
// the accounts page, where the session cookie is sent again.
func (c *Console) callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	c.mu.Lock()
	pl := c.pending[q.Get("state")]
	delete(c.pending, q.Get("state"))
	var s *session
	if pl != nil {
		s = c.sessions[pl.session]
	}
	c.mu.Unlock()
	if pl == nil || c.opts.Now().Sub(pl.started) > pendingLifetime {
		c.log.Warn("console sign-in refused: the browser came back with an unknown state", "remote", r.RemoteAddr)
		c.render(w, r, http.StatusBadRequest, "message.html", page{Title: "Sign-in refused",
			Data: message{Text: sentence(tokens.ErrStateMismatch.Error()), Next: "/"}})
		return
	}
	identity := pl.login.Identity()
	res, err := c.finishConnect(r.Context(), pl, q)
	if err != nil {
		c.log.Warn("console sign-in failed", "identity", identity, "flow", config.FlowAuthCode, "err", err)
		text := fmt.Sprintf("Sign-in of %s failed: %s", identity, err)
		c.addNotice(s, false, text)
		c.render(w, r, http.StatusBadRequest, "message.html", page{Title: "Sign-in failed", Data: message{Text: text, Next: "/", Go: true}})
		return
	}
	text := signedInText(res)
	c.log.Info("console sign-in", "result", "success", "identity", identity, "user", res.User, "flow", res.Flow)
	c.addNotice(s, true, text)
	c.render(w, r, http.StatusOK, "message.html", page{Title: "Signed in", Data: message{OK: true, Text: text, Next: "/", Go: true}})
}

// finishConnect reads the redirect and redeems its code.
func (c *Console) finishConnect(ctx context.Context, pl *pendingLogin, q map[string][]string) (*tokens.LoginResult, error) {
	code, err := pl.login.Code(q)
	if err != nil {
		return nil, err
	}
	store := c.opts.Store
	if store == nil {
		return nil, errors.New("this xoauthd has no token store")
	}
	ctx, cancel := context.WithTimeout(ctx, idpTimeout)
	defer cancel()
	return pl.login.Finish(ctx, store, code, c.opts.HTTPClient)
}

// signedInText says what a sign-in stored, like xoauthd login does.
func signedInText(res *tokens.LoginResult) string {
	who := res.User
	if who == "" {
		who = res.Identity
	}
	return fmt.Sprintf("Signed in as %s (provider %s, %s flow). The access token is valid until %s; xoauthd uses the new tokens at once.",
		who, res.Provider, res.Flow, res.Expiry.Local().Format(time.DateTime))
}

// deviceStart asks the provider for a device code and shows it.
func (c *Console) deviceStart(w http.ResponseWriter, r *http.Request, s *session) {
	identity, prov, store, ok := c.identityAndStore(w, r, s)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), idpTimeout)
	defer cancel()
	dl, err := tokens.StartDeviceLogin(ctx, prov, identity, c.opts.HTTPClient)
	if err != nil {
		c.log.Warn("console device sign-in failed to start", "identity", identity, "err", err)
		c.fail(w, r, s, http.StatusBadGateway, "The sign-in with a code cannot start: "+err.Error())
		return
	}
	d := &deviceLogin{id: rand.Text(), identity: identity, provider: prov.Name, started: c.opts.Now(), code: dl}
	c.mu.Lock()
	evictOldest(c.devices, maxDevices, func(d *deviceLogin) time.Time { return d.started })
	c.devices[d.id] = d
	c.mu.Unlock()
	c.log.Info("console sign-in started", "identity", identity, "provider", prov.Name, "flow", config.FlowDevice)
	c.wg.Go(func() { c.waitDevice(d, store) })
	http.Redirect(w, r, "/device/"+d.id, http.StatusSeeOther)
}

// waitDevice polls until the device sign-in ends and records how.
func (c *Console) waitDevice(d *deviceLogin, store tokens.Backend) {
	ctx, cancel := context.WithDeadline(c.ctx, d.code.Expiry.Add(time.Minute))
	defer cancel()
	res, err := d.code.Wait(ctx, store)
	c.mu.Lock()
	defer c.mu.Unlock()
	d.done = true
	if err != nil {
		c.log.Warn("console sign-in failed", "identity", d.identity, "flow", config.FlowDevice, "err", err)
		d.text = fmt.Sprintf("Sign-in of %s failed: %s", d.identity, err)
		return
	}
	c.log.Info("console sign-in", "result", "success", "identity", d.identity, "user", res.User, "flow", res.Flow)
	d.ok, d.text = true, signedInText(res)
}

// deviceView is the data of device.html.
type deviceView struct {
	ID, Identity, Provider    string
	UserCode, VerificationURI string
	Expiry                    time.Time
	Done, OK                  bool
	Text                      string
}

// devicePage shows the code and where to enter it, and how the sign-in
// ended once it has.
func (c *Console) devicePage(w http.ResponseWriter, r *http.Request, s *session) {
	c.mu.Lock()
	d := c.devices[r.PathValue("id")]
	var v deviceView
	if d != nil {
		v = deviceView{ID: d.id, Identity: d.identity, Provider: d.provider, UserCode: d.code.UserCode,
			VerificationURI: d.code.VerificationURI, Expiry: d.code.Expiry, Done: d.done, OK: d.ok, Text: d.text}
	}
	c.mu.Unlock()
	if d == nil {
		c.fail(w, r, s, http.StatusNotFound, "This sign-in with a code is not known (it ended long ago, or xoauthd restarted). Start it again from the accounts page.")
		return
	}
	p := page{Title: "Sign in " + v.Identity + " with a code", CSRF: s.csrf, SignedIn: true, Data: v}
	if !v.Done {
		p.Refresh = deviceRefresh
	}
	c.render(w, r, http.StatusOK, "device.html", p)
}

// identitySignOutPage asks to confirm signing an identity out.
func (c *Console) identitySignOutPage(w http.ResponseWriter, r *http.Request, s *session) {
	identity, prov, ok := c.identityFromForm(w, r, s)
	if !ok {
		return
	}
	c.render(w, r, http.StatusOK, "confirm.html", page{Title: "Sign out " + identity, CSRF: s.csrf, SignedIn: true,
		Data: struct{ Identity, Provider string }{identity, prov.Name}})
}

// identitySignOut removes an identity's tokens, like xoauthd logout.
func (c *Console) identitySignOut(w http.ResponseWriter, r *http.Request, s *session) {
	identity, _, store, ok := c.identityAndStore(w, r, s)
	if !ok {
		return
	}
	found, err := store.Delete(identity)
	switch {
	case err != nil:
		c.log.Error("console sign-out of an identity failed", "identity", identity, "err", err)
		c.addNotice(s, false, fmt.Sprintf("Signing %s out failed: %v", identity, err))
	case !found:
		c.addNotice(s, true, fmt.Sprintf("Nothing was stored for %s.", identity))
	default:
		c.log.Info("console signed an identity out", "identity", identity)
		c.addNotice(s, true, fmt.Sprintf("Removed the tokens of %s; its accounts fail until it signs in again. "+
			"This does not revoke the sign-in at the provider: to do that, sign out of the app's sessions there "+
			"(Microsoft: My Account > Sign out everywhere, or an admin revokes the user's sessions).", identity))
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

func orDefault(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// sentence starts s with a capital letter and ends it with a period.
func sentence(s string) string {
	if s == "" {
		return s
	}
	s = strings.ToUpper(s[:1]) + s[1:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}
