package testidp

import (
	"net/http"
	"strings"
	"testing"
)

func TestStartOptions(t *testing.T) {
	for _, o := range []Options{
		{Tenant: "contoso.com/evil"},
		{SigningKey: []byte{}},
		{Addr: "256.0.0.1:0"},
	} {
		if p, err := Start(o); err == nil {
			p.Close()
			t.Errorf("Start(%+v) succeeded, want an error", o)
		}
	}
	p := setup(t, Options{})
	if !strings.HasPrefix(p.Authority(), "http://127.0.0.1:") || p.Tenant() != testTenant {
		t.Fatalf("authority %q tenant %q", p.Authority(), p.Tenant())
	}
}

func TestDiscovery(t *testing.T) {
	p := setup(t, Options{})
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, p.Authority()+"/organizations/v2.0/.well-known/openid-configuration", nil)
	r := do(t, req)
	var d discoveryBody
	mustJSON(t, r.body, &d)
	if r.status != 200 || d.TokenEndpoint != endpoint(p, "organizations", "token") || d.DeviceAuthorizationEndpoint != endpoint(p, "organizations", "devicecode") || d.Issuer != p.Issuer() {
		t.Fatalf("status %d discovery %+v", r.status, d)
	}
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodGet, p.Authority()+"/nope.com/v2.0/.well-known/openid-configuration", nil)
	wantError(t, do(t, req), 400, "invalid_tenant", 90002)
}
