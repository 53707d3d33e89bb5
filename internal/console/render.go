package console

import (
	"bytes"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/xoauthd/xoauthd/internal/check"
)

// page is what every template gets.
type page struct {
	Title    string
	CSRF     string   // the session's (or the sign-in form's) CSRF token
	SignedIn bool     // shows the sign-out button
	Notices  []notice // what the last actions did
	// Refresh, when positive, makes the page reload itself after that many
	// seconds when JavaScript is off (live pages).
	Refresh int
	Data    any
}

// pageNames are the templates in templates/, each rendered inside layout.html.
var pageNames = []string{"signin.html", "accounts.html", "account.html", "device.html", "confirm.html", "test.html", "message.html"}

var funcs = template.FuncMap{
	"when":  func(t time.Time) string { return check.When(t, time.Now()) },
	"lower": strings.ToLower,
	"join":  strings.Join,
	"pair":  func(csrf string, id identityView) identityActions { return identityActions{csrf, id} },
}

// identityActions is the data of the identity-actions template.
type identityActions struct {
	CSRF string
	identityView
}

// parsePages parses every page with the layout; a broken template is a
// programming error caught by every test.
func parsePages() map[string]*template.Template {
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		out[name] = template.Must(template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html", "templates/"+name))
	}
	return out
}

// render writes a page inside the layout, or only the template named
// "live" when the request asks for the live part (?part=live).
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	t := c.pages[name]
	tmpl := "layout"
	if r.URL.Query().Get("part") == "live" && t.Lookup("live") != nil {
		tmpl = "live"
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, tmpl, p); err != nil {
		c.log.Error("rendering a console page", "page", name, "err", err)
		http.Error(w, "the page could not be rendered; the log says why", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// fail answers with a page that says what was refused and why.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, status int, text string) {
	p := page{Title: http.StatusText(status), Data: message{Text: text, OK: false}}
	if s != nil {
		p.SignedIn, p.CSRF = true, s.csrf
	}
	c.render(w, r, status, "message.html", p)
}

// message is the data of message.html.
type message struct {
	OK   bool
	Text string
	// Next, when set, is where the page leads (and, with Go, goes by
	// itself at once).
	Next string
	Go   bool
	// DeviceIdentity and DeviceProvider, when set, offer the device code
	// sign-in of that identity (where Connect cannot come back).
	DeviceIdentity, DeviceProvider string
}
