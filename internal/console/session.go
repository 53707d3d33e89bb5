package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/proxy"
)

// Sessions and sign-in.
const (
	sessionCookie = "xoauthd_console"
	// signInCookie carries the sign-in form's CSRF token before there is
	// a session (double submit), so that no other site can sign a browser
	// in to the console.
	signInCookie = "xoauthd_console_signin"
	// sessionIdle ends a session unused for this long; sessionMax ends
	// any session this long after sign-in.
	sessionIdle = 30 * time.Minute
	sessionMax  = 12 * time.Hour
	// maxSessions bounds the sessions kept; the least recently used goes.
	maxSessions = 64
	// maxNotices bounds the messages a session keeps for its next page.
	maxNotices = 8
	// consoleLogin is the login the console's password is throttled as.
	consoleLogin = "console"
)

// session is one signed-in browser.
type session struct {
	id      string // the cookie's value
	csrf    string // sent back by every form of the session
	created time.Time
	seen    time.Time // last request
	notices []notice  // shown once, on the next page
	// passwordTag identifies the password hash in force at sign-in: a
	// reload that changes the password ends the session.
	passwordTag [sha256.Size]byte
}

// notice is a message for the next page: what an action did.
type notice struct {
	OK   bool
	Text string
}

// auth checks the console's password with the credential check of local
// mail logins (proxy.Credentials): the same argon2id verification, bounded
// concurrency and throttling of failures per source and per login. This
// is the console's one use of it.
type auth struct {
	creds *proxy.Credentials
}

func newAuth(cfg func() *config.Config, opts proxy.CredentialOptions, log *slog.Logger) *auth {
	lookup := func(login string) (proxy.Account, string, bool) {
		phc := cfg().Admin.PasswordHash.Reveal()
		return proxy.Account{Login: consoleLogin}, phc, phc != "" && login == consoleLogin
	}
	if opts.Log == nil {
		opts.Log = log
	}
	return &auth{creds: proxy.NewCredentials(lookup, opts)}
}

// check verifies password for a browser at remote: nil, errWrongPassword,
// errThrottled, or another error that is not the browser's fault.
func (a *auth) check(ctx context.Context, password string, remote netip.Addr) error {
	_, err := a.creds.Authenticate(ctx, consoleLogin, password, remote)
	switch {
	case errors.Is(err, proxy.ErrBadCredentials):
		return errWrongPassword
	case errors.Is(err, proxy.ErrThrottled):
		return errThrottled
	}
	return err
}

var (
	errWrongPassword = errors.New("wrong password")
	errThrottled     = errors.New("too many failed sign-ins: wait a few minutes, then try again")
)

// remoteAddr is the browser's address (the proxy's address behind a port
// forward); the zero Addr when unknown.
func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr()
}

// signInPage shows the password form.
func (c *Console) signInPage(w http.ResponseWriter, r *http.Request) {
	if c.session(r) != nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	c.renderSignIn(w, r, http.StatusOK, "")
}

func (c *Console) renderSignIn(w http.ResponseWriter, r *http.Request, status int, problem string) {
	token := rand.Text()
	http.SetCookie(w, c.cookie(r, signInCookie, token, 0))
	c.render(w, r, status, "signin.html", page{Title: "Sign in", CSRF: token, Data: problem})
}

// signIn checks the password and starts a session.
func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	if !c.parseForm(w, r) {
		return
	}
	ck, err := r.Cookie(signInCookie)
	if err != nil || !sameToken(ck.Value, r.PostForm.Get("csrf")) {
		c.log.Warn("console sign-in refused: missing or wrong form token", "remote", r.RemoteAddr)
		c.renderSignIn(w, r, http.StatusForbidden, "The form was too old or came from another page. Please sign in again.")
		return
	}
	remote := remoteAddr(r)
	err = c.auth.check(r.Context(), r.PostForm.Get("password"), remote)
	switch {
	case errors.Is(err, errWrongPassword):
		c.log.Warn("console sign-in failed", "result", "failure", "reason", "wrong password", "remote", r.RemoteAddr)
		c.renderSignIn(w, r, http.StatusUnauthorized, "Wrong password.")
		return
	case errors.Is(err, errThrottled):
		c.log.Warn("console sign-in refused", "result", "failure", "reason", "throttled after failed sign-ins", "remote", r.RemoteAddr)
		c.renderSignIn(w, r, http.StatusTooManyRequests, "Too many failed sign-ins. Wait a few minutes, then try again.")
		return
	case err != nil:
		c.log.Error("console sign-in failed", "result", "error", "remote", r.RemoteAddr, "err", err)
		c.renderSignIn(w, r, http.StatusInternalServerError, "The password could not be checked; the log says why.")
		return
	}
	s := c.newSession()
	http.SetCookie(w, c.cookie(r, signInCookie, "", -1))
	http.SetCookie(w, c.cookie(r, sessionCookie, s.id, 0))
	c.log.Info("console sign-in", "result", "success", "remote", r.RemoteAddr)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// signOut ends the session.
func (c *Console) signOut(w http.ResponseWriter, r *http.Request, s *session) {
	c.mu.Lock()
	delete(c.sessions, s.id)
	c.mu.Unlock()
	http.SetCookie(w, c.cookie(r, sessionCookie, "", -1))
	c.log.Info("console sign-out", "remote", r.RemoteAddr)
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

// cookie returns a console cookie: HttpOnly, SameSite=Strict, Secure when
// the console is served over TLS. maxAge < 0 deletes it; 0 makes it last
// as long as the browser session.
func (c *Console) cookie(r *http.Request, name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil}
}

// newSession starts a session, dropping the least recently used one when
// there are too many.
func (c *Console) newSession() *session {
	now := c.opts.Now()
	s := &session{id: rand.Text() + rand.Text(), csrf: rand.Text(), created: now, seen: now, passwordTag: c.passwordTag()}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, old := range c.sessions {
		if c.expired(old, now) {
			delete(c.sessions, id)
		}
	}
	evictOldest(c.sessions, maxSessions, func(s *session) time.Time { return s.seen })
	c.sessions[s.id] = s
	return s
}

func (c *Console) expired(s *session, now time.Time) bool {
	return now.Sub(s.seen) > sessionIdle || now.Sub(s.created) > sessionMax
}

// session returns the request's live session, or nil.
func (c *Console) session(r *http.Request) *session {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return nil
	}
	now := c.opts.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sessions[ck.Value]
	if s == nil {
		return nil
	}
	if c.expired(s, now) || s.passwordTag != c.passwordTag() {
		delete(c.sessions, s.id)
		return nil
	}
	s.seen = now
	return s
}

// passwordTag identifies the console password in force.
func (c *Console) passwordTag() [sha256.Size]byte {
	return sha256.Sum256([]byte(c.opts.Config().Admin.PasswordHash.Reveal()))
}

// signedIn wraps a handler that needs a session: without one, a GET is sent
// to the sign-in page and anything else refused. A POST must carry the
// session's CSRF token.
func (c *Console) signedIn(h func(http.ResponseWriter, *http.Request, *session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := c.session(r)
		if s == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/signin", http.StatusSeeOther)
				return
			}
			c.fail(w, r, nil, http.StatusUnauthorized, "You are not signed in to the console (or your session ended). Sign in and try again.")
			return
		}
		if r.Method == http.MethodPost {
			if !c.parseForm(w, r) {
				return
			}
			if !sameToken(s.csrf, r.PostForm.Get("csrf")) {
				c.log.Warn("console request refused: missing or wrong CSRF token", "path", r.URL.Path, "remote", r.RemoteAddr)
				c.fail(w, r, s, http.StatusForbidden, "The form was too old or came from another page; nothing was done. Go back, reload the page and try again.")
				return
			}
		}
		h(w, r, s)
	})
}

// parseForm reads a posted form of bounded size.
func (c *Console) parseForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		c.fail(w, r, nil, http.StatusBadRequest, "The form could not be read.")
		return false
	}
	return true
}

// sameToken compares a form token in constant time; empty never matches.
func sameToken(want, got string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(want), []byte(strings.TrimSpace(got))) == 1
}

// addNotice keeps a message for the session's next page.
func (c *Console) addNotice(s *session, ok bool, text string) {
	if s == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s.notices = append(s.notices, notice{OK: ok, Text: text})
	if len(s.notices) > maxNotices {
		s.notices = s.notices[len(s.notices)-maxNotices:]
	}
}

// takeNotices returns and forgets the session's messages.
func (c *Console) takeNotices(s *session) []notice {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := s.notices
	s.notices = nil
	return n
}
