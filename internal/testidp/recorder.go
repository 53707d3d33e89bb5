package testidp

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// maxRecordedBody bounds a token response the Recorder reads.
const maxRecordedBody = 1 << 20

// Recorder is a reverse proxy in front of an IdP that keeps every token
// the token endpoint hands out (access, refresh and id tokens), so that a
// test can look for them where they must never appear: logs, pages,
// headers. Configure URL as the provider's authority.
type Recorder struct {
	// URL is the proxy's base URL, to use as the authority.
	URL string
	idp *IdP

	mu     sync.Mutex
	issued []string // in the order they were issued
}

// NewRecorder starts a Recorder for p that stops when the test ends.
func NewRecorder(t testing.TB, p *IdP) *Recorder {
	t.Helper()
	target, err := url.Parse(p.Authority())
	if err != nil {
		t.Fatal(err)
	}
	r := &Recorder{idp: p}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = r.record
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

// record keeps the tokens of a token endpoint response.
func (r *Recorder) record(resp *http.Response) error {
	if !strings.HasSuffix(resp.Request.URL.Path, "/token") {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxRecordedBody))
	resp.Body.Close()
	if err != nil {
		return err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	var fields map[string]any
	if json.Unmarshal(body, &fields) == nil {
		r.mu.Lock()
		for _, k := range []string{"access_token", "refresh_token", "id_token"} {
			if v, ok := fields[k].(string); ok && v != "" {
				r.issued = append(r.issued, v)
			}
		}
		r.mu.Unlock()
	}
	return nil
}

// Tokens returns the tokens issued so far, in order.
func (r *Recorder) Tokens() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.issued...)
}

// Authorize is IdP.Authorize for an authorize URL that names the Recorder.
func (r *Recorder) Authorize(authURL string) (string, error) {
	return r.idp.Authorize(strings.Replace(authURL, r.URL, r.idp.Authority(), 1))
}
