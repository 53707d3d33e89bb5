package console

import (
	"crypto/tls"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzRedirectURI: whatever Host a browser (or anyone) sends, the redirect
// URI handed to the identity provider is http://localhost on some port,
// path /, or there is none.
func FuzzRedirectURI(f *testing.F) {
	for _, h := range []string{"localhost:9925", "LOCALHOST:1", "localhost", "127.0.0.1:9925", "evil.example:80",
		"localhost.evil.example:9925", "localhost:9925@evil", "[::1]:9925", "localhost:", "localhost:99/x"} {
		f.Add(h, false)
	}
	f.Add("localhost:9925", true)
	f.Fuzz(func(t *testing.T, host string, overTLS bool) {
		r := &http.Request{Host: host}
		if overTLS {
			r.TLS = &tls.ConnectionState{}
		}
		got, ok := redirectURI(r)
		if !ok {
			if got != "" {
				t.Fatalf("redirectURI(%q) = %q without ok", host, got)
			}
			return
		}
		u, err := url.Parse(got)
		if err != nil || overTLS || u.Scheme != "http" || u.Hostname() != "localhost" || u.Path != "/" ||
			u.RawQuery != "" || u.User != nil || !strings.HasPrefix(got, "http://localhost") {
			t.Fatalf("redirectURI(%q, tls %v) = %q (%v)", host, overTLS, got, err)
		}
	})
}
