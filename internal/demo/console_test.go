package demo

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// TestConsole is the newcomer's path: open the console address that the
// demo prints, sign in with the password it prints, press Connect for the
// demo identity (the built-in identity provider signs it in and sends the
// browser back), press Test and see every step pass.
func TestConsole(t *testing.T) {
	e, _ := startEnv(t, Options{})
	var out strings.Builder
	if err := e.WriteInstructions(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "address    "+e.ConsoleURL()) || !strings.Contains(out.String(), "password   "+e.ConsolePassword()) ||
		!strings.HasPrefix(e.ConsoleURL(), "http://localhost:") {
		t.Fatalf("the instructions do not name the console (%s):\n%s", e.ConsoleURL(), out.String())
	}
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: ioTimeout}
	base := strings.TrimSuffix(e.ConsoleURL(), "/")
	get := func(path string) string {
		t.Helper()
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	post := func(path string, form url.Values) (string, string) {
		t.Helper()
		resp, err := client.PostForm(base+path, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.Request.URL.Path, string(b)
	}
	token := func(page string) string {
		t.Helper()
		m := csrfField.FindStringSubmatch(page)
		if m == nil {
			t.Fatalf("no form token in:\n%s", page)
		}
		return m[1]
	}
	_, home := post("/signin", url.Values{"csrf": {token(get("/signin"))}, "password": {e.ConsolePassword()}})
	if !strings.Contains(home, Login) {
		t.Fatalf("accounts page after sign-in:\n%s", home)
	}
	csrf := token(home)
	post("/identity/connect", url.Values{"csrf": {csrf}, "identity": {Identity}, "provider": {providerName}})
	if home := get("/"); !strings.Contains(home, "Signed in as "+Identity+" (provider demo, authcode flow)") {
		t.Fatalf("accounts page after Connect:\n%s", home)
	}
	where, _ := post("/test", url.Values{"csrf": {csrf}, "login": {Login}})
	deadline := time.Now().Add(ioTimeout)
	page := get(where + "?part=live")
	for strings.Contains(page, "data-live=") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		page = get(where + "?part=live")
	}
	if !strings.Contains(page, "Every step passed.") {
		t.Fatalf("test page:\n%s", page)
	}
}
