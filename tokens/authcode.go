package tokens

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"golang.org/x/oauth2"

	"github.com/xoauthd/xoauthd/config"
)

// Limits of the loopback redirect listener.
const (
	callbackHeaderTimeout = 10 * time.Second
	callbackMaxHeader     = 16 << 10
	callbackShutdown      = 2 * time.Second
	// browserWaitTimeout is how long a login waits for the browser to come
	// back; Microsoft's authorization codes live about 10 minutes.
	browserWaitTimeout = 15 * time.Minute
)

// ErrStateMismatch means the browser came back with a state that this login
// did not send: a stale tab of an earlier login, or a forged request.
var ErrStateMismatch = errors.New("the browser came back with a sign-in response that does not belong to this login (state mismatch); nothing was stored: start the login again and use only the newest browser tab")

// callback is what the browser brought back to the redirect URI.
type callback struct {
	code string
	err  error
}

// authCodeFlow runs the authorization code flow with PKCE (RFC 7636, S256)
// and a loopback redirect (RFC 8252 §7.3): it listens on 127.0.0.1 (and ::1
// when it can) on a free port, sends the browser to the provider with
// redirect_uri http://localhost:PORT/, waits for the redirect and redeems the
// code.
func authCodeFlow(ctx context.Context, p *provider, identity string, opts LoginOptions) (*oauth2.Token, error) {
	if p.authURL == "" {
		return nil, fmt.Errorf("provider %s: auth_url is not set (hint: set auth_url, or use --device)", p.name)
	}
	listeners, port, err := listenLoopback()
	if err != nil {
		return nil, err
	}
	redirect := fmt.Sprintf("http://localhost:%d/", port)
	l := newAuthCodeLogin(p, identity, redirect)
	results := make(chan callback, 1)
	srv := &http.Server{
		Handler:           callbackHandler(l.state, p, identity, results),
		ReadHeaderTimeout: callbackHeaderTimeout,
		MaxHeaderBytes:    callbackMaxHeader,
	}
	for _, ln := range listeners {
		go srv.Serve(ln)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callbackShutdown)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	sendToBrowser(opts, identity, l.URL(), redirect)

	code, err := waitForCallback(ctx, results)
	if err != nil {
		return nil, err
	}
	return l.exchange(ctx, code)
}

// listenLoopback listens on a free port of 127.0.0.1 and, when it can, on
// the same port of ::1, because browsers may resolve localhost to either.
func listenLoopback() ([]net.Listener, int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, 0, fmt.Errorf("listening for the browser's redirect on 127.0.0.1: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	listeners := []net.Listener{ln}
	if ln6, err := net.Listen("tcp", net.JoinHostPort("::1", strconv.Itoa(port))); err == nil {
		listeners = append(listeners, ln6)
	}
	return listeners, port, nil
}

// sendToBrowser prints the sign-in address and, unless NoBrowser, opens it.
func sendToBrowser(opts LoginOptions, identity, authURL, redirect string) {
	fmt.Fprintf(opts.Out, "To sign in as %s, open this address in a browser:\n\n  %s\n\n", identity, authURL)
	if !opts.NoBrowser {
		open := opts.OpenBrowser
		if open == nil {
			open = openBrowser
		}
		if err := open(authURL); err != nil {
			fmt.Fprintf(opts.Out, "Could not open a browser (%v); open the address above yourself.\n", err)
		} else {
			fmt.Fprintln(opts.Out, "A browser should open now; if it does not, open the address above yourself.")
		}
	}
	fmt.Fprintf(opts.Out, "Waiting for the sign-in to come back to %s ...\n", redirect)
}

// waitForCallback waits for the redirect's code, at most browserWaitTimeout.
func waitForCallback(ctx context.Context, results <-chan callback) (string, error) {
	wait := time.NewTimer(browserWaitTimeout)
	defer wait.Stop()
	select {
	case cb := <-results:
		return cb.code, cb.err
	case <-ctx.Done():
		return "", fmt.Errorf("waiting for the browser sign-in: %w", ctx.Err())
	case <-wait.C:
		return "", fmt.Errorf("no sign-in came back from the browser within %v; nothing was stored: run the login again", browserWaitTimeout)
	}
}

// authOptions are the authorize request's parameters besides the basics.
func authOptions(p *provider, identity, verifier string) []oauth2.AuthCodeOption {
	opts := []oauth2.AuthCodeOption{
		oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("login_hint", identity),
		oauth2.SetAuthURLParam("prompt", "select_account"),
	}
	if p.kind == config.TypeGoogle {
		// Google issues a refresh token only with access_type=offline, and a
		// second one only when consent is asked for again.
		opts = append(opts, oauth2.AccessTypeOffline, oauth2.SetAuthURLParam("prompt", "consent select_account"))
	}
	return opts
}

// callbackPage is what the browser shows after the redirect.
var callbackPage = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>xoauthd sign-in</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>{{.Title}}</h1>
<p>{{.Text}}</p>
</body></html>
`))

type pageData struct{ Title, Text string }

// callbackHandler serves the redirect URI: it delivers the first response
// that carries a code or an error to results and shows a page saying what
// happened. Requests without either (a favicon, a prefetch) are ignored.
func callbackHandler(state string, p *provider, identity string, results chan<- callback) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if r.URL.Path != "/" || (q.Get("code") == "" && q.Get("error") == "") {
			http.NotFound(w, r)
			return
		}
		cb := redirectResult(q, state, p, identity)
		page := pageData{"Signed in", "You can close this tab now and return to the terminal where xoauthd is running."}
		status := http.StatusOK
		if cb.err != nil {
			status = http.StatusBadRequest
			page = pageData{"Sign-in failed", "xoauthd stored nothing. The terminal says why and what to do; you can close this tab."}
		}
		select {
		case results <- cb:
		default:
			page = pageData{"Already done", "This login has already received a sign-in response; you can close this tab."}
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		callbackPage.Execute(w, page)
	})
}

// redirectResult reads what the browser brought back to the redirect URI:
// the code, or why there is none. A state other than the one sent is
// refused first (ErrStateMismatch), compared in constant time.
func redirectResult(q url.Values, state string, p *provider, identity string) callback {
	switch {
	case subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1:
		return callback{err: ErrStateMismatch}
	case q.Get("error") != "":
		return callback{err: classifyResponse(oauthError{Error: q.Get("error"), Description: q.Get("error_description")},
			identity, p.name, time.Now(), nil)}
	case q.Get("code") == "":
		return callback{err: errors.New("the sign-in response carries neither a code nor an error; nothing was stored: start the login again")}
	}
	return callback{code: q.Get("code")}
}
