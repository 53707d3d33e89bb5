package config

import (
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	cfg, err := Load("testdata/minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log.Level != "info" || cfg.Log.Format != "text" || cfg.Log.Trace {
		t.Errorf("log = %+v", cfg.Log)
	}
	if cfg.Admin.Listen != "" {
		t.Errorf("admin.listen = %q, want disabled", cfg.Admin.Listen)
	}
	if want := filepath.Join("testdata", "tokens.json"); cfg.Store.Path != want {
		t.Errorf("store.path = %q, want %q", cfg.Store.Path, want)
	}
	if want := filepath.Join("testdata", "store.key"); cfg.Store.KeyFile != want {
		t.Errorf("store.KeyFile = %q, want %q", cfg.Store.KeyFile, want)
	}
	imap, smtp := cfg.Servers[0], cfg.Servers[1]
	if imap.MaxConnections != 1000 || time.Duration(imap.IdleTimeout) != 31*time.Minute || imap.MaxUpstreamPerIdentity != 20 {
		t.Errorf("imap server defaults = %+v", imap)
	}
	if smtp.MaxUpstreamPerIdentity != 3 {
		t.Errorf("smtp max_upstream_per_identity = %d, want 3", smtp.MaxUpstreamPerIdentity)
	}
	if time.Duration(smtp.IdleTimeout) != 5*time.Minute {
		t.Errorf("smtp idle_timeout = %v, want 5m (RFC 5321's minimum wait for a command)", smtp.IdleTimeout)
	}
	if imap.Upstream != "" || imap.UpstreamTLS != "" {
		t.Errorf("imap upstream = %q/%q; want empty (taken from the provider)", imap.Upstream, imap.UpstreamTLS)
	}
	a := cfg.Accounts[0]
	if a.Mailbox != "billing@contoso.com" || a.Provider != "m365" {
		t.Errorf("account defaults: mailbox %q, provider %q", a.Mailbox, a.Provider)
	}
}

var delegatedScopes = []string{
	"https://outlook.office.com/IMAP.AccessAsUser.All",
	"https://outlook.office.com/POP.AccessAsUser.All",
	"https://outlook.office.com/SMTP.Send",
	"offline_access", "openid", "profile", "email",
}

func TestProviderPresets(t *testing.T) {
	msUp := map[string]string{"imap": "outlook.office365.com:993", "pop3": "outlook.office365.com:995", "smtp": "smtp.office365.com:587"}
	tests := []struct {
		name string
		in   Provider
		want Provider
	}{
		{
			name: "microsoft defaults",
			in:   Provider{Type: TypeMicrosoft},
			want: Provider{Type: TypeMicrosoft, Tenant: "organizations", Flow: FlowAuthCode,
				Authority: "https://login.microsoftonline.com",
				AuthURL:   "https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize",
				TokenURL:  "https://login.microsoftonline.com/organizations/oauth2/v2.0/token",
				DeviceURL: "https://login.microsoftonline.com/organizations/oauth2/v2.0/devicecode",
				Scopes:    delegatedScopes, Upstreams: msUp},
		},
		{
			name: "microsoft client credentials, own authority, partial upstreams",
			in: Provider{Type: TypeMicrosoft, Tenant: "contoso.onmicrosoft.com", Flow: FlowClientCredentials,
				Authority: "http://127.0.0.1:8080/", Upstreams: map[string]string{"imap": "127.0.0.1:9993"}},
			want: Provider{Type: TypeMicrosoft, Tenant: "contoso.onmicrosoft.com", Flow: FlowClientCredentials,
				Authority: "http://127.0.0.1:8080/",
				AuthURL:   "http://127.0.0.1:8080/contoso.onmicrosoft.com/oauth2/v2.0/authorize",
				TokenURL:  "http://127.0.0.1:8080/contoso.onmicrosoft.com/oauth2/v2.0/token",
				DeviceURL: "http://127.0.0.1:8080/contoso.onmicrosoft.com/oauth2/v2.0/devicecode",
				Scopes:    []string{"https://outlook.office365.com/.default"},
				Upstreams: map[string]string{"imap": "127.0.0.1:9993", "pop3": "outlook.office365.com:995", "smtp": "smtp.office365.com:587"}},
		},
		{
			name: "microsoft explicit endpoints and scopes win",
			in:   Provider{Type: TypeMicrosoft, Flow: FlowDevice, TokenURL: "https://idp.test/token", Scopes: []string{"a"}},
			want: Provider{Type: TypeMicrosoft, Tenant: "organizations", Flow: FlowDevice,
				Authority: "https://login.microsoftonline.com",
				AuthURL:   "https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize",
				TokenURL:  "https://idp.test/token",
				DeviceURL: "https://login.microsoftonline.com/organizations/oauth2/v2.0/devicecode",
				Scopes:    []string{"a", "openid", "profile", "email"}, Upstreams: msUp},
		},
		{
			name: "google",
			in:   Provider{Type: TypeGoogle},
			want: Provider{Type: TypeGoogle, Flow: FlowAuthCode,
				AuthURL:   "https://accounts.google.com/o/oauth2/v2/auth",
				TokenURL:  "https://oauth2.googleapis.com/token",
				DeviceURL: "https://oauth2.googleapis.com/device/code",
				Scopes:    []string{"https://mail.google.com/", "openid", "email"},
				Upstreams: map[string]string{"imap": "imap.gmail.com:993", "pop3": "pop.gmail.com:995", "smtp": "smtp.gmail.com:587"}},
		},
		{
			name: "custom gets only the flow",
			in:   Provider{Type: TypeCustom},
			want: Provider{Type: TypeCustom, Flow: FlowAuthCode},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.in
			p.applyDefaults()
			if !sameProvider(p, tt.want) {
				t.Errorf("got  %+v\nwant %+v", p, tt.want)
			}
		})
	}
}

func sameProvider(a, b Provider) bool {
	return a.Type == b.Type && a.Tenant == b.Tenant && a.Flow == b.Flow && a.Authority == b.Authority &&
		a.AuthURL == b.AuthURL && a.TokenURL == b.TokenURL && a.DeviceURL == b.DeviceURL &&
		slices.Equal(a.Scopes, b.Scopes) && len(a.Upstreams) == len(b.Upstreams) &&
		func() bool {
			for k, v := range b.Upstreams {
				if a.Upstreams[k] != v {
					return false
				}
			}
			return true
		}()
}

// TestResolved: Resolved fills a copy, escapes the tenant as one path
// segment, and leaves the original alone.
func TestResolved(t *testing.T) {
	p := &Provider{Type: TypeMicrosoft, Tenant: "a b", Scopes: []string{"x"}, Upstreams: map[string]string{"imap": "h:1"}}
	r := p.Resolved()
	if r.TokenURL != "https://login.microsoftonline.com/a%20b/oauth2/v2.0/token" {
		t.Errorf("token URL %q", r.TokenURL)
	}
	if !slices.Equal(r.Scopes, []string{"x", "openid", "profile", "email"}) || r.Upstreams["pop3"] == "" {
		t.Errorf("resolved %+v", r)
	}
	if p.TokenURL != "" || !slices.Equal(p.Scopes, []string{"x"}) || len(p.Upstreams) != 1 || p.Flow != "" {
		t.Errorf("the original changed: %+v", p)
	}
	if again := r.Resolved(); !sameProvider(*again, *r) {
		t.Errorf("not idempotent: %+v", again)
	}
}

// TestPresetsNotShared: filling one provider must not alias another's maps
// or slices.
func TestPresetsNotShared(t *testing.T) {
	a, b := Provider{Type: TypeMicrosoft}, Provider{Type: TypeMicrosoft}
	a.applyDefaults()
	b.applyDefaults()
	a.Scopes[0] = "changed"
	a.Upstreams["imap"] = "changed:1"
	if b.Scopes[0] == "changed" || b.Upstreams["imap"] == "changed:1" {
		t.Error("providers share preset slices or maps")
	}
}

func TestUpstreamFor(t *testing.T) {
	ms := &Provider{Type: TypeMicrosoft}
	ms.applyDefaults()
	tests := []struct {
		name     string
		s        Server
		p        *Provider
		addr, tl string
	}{
		{"imap from provider", Server{Protocol: "imap"}, ms, "outlook.office365.com:993", TLSImplicit},
		{"pop3 from provider", Server{Protocol: "pop3"}, ms, "outlook.office365.com:995", TLSImplicit},
		{"smtp from provider", Server{Protocol: "smtp"}, ms, "smtp.office365.com:587", TLSStartTLS},
		{"own upstream port 25", Server{Protocol: "smtp", Upstream: "mx.test:25"}, ms, "mx.test:25", TLSStartTLS},
		{"own upstream 465", Server{Protocol: "smtp", Upstream: "mail.test:465"}, ms, "mail.test:465", TLSImplicit},
		{"explicit mode wins", Server{Protocol: "imap", Upstream: "127.0.0.1:1143", UpstreamTLS: TLSStartTLS}, ms, "127.0.0.1:1143", TLSStartTLS},
		{"no provider", Server{Protocol: "imap"}, nil, "", TLSImplicit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.s
			s.applyDefaults()
			addr, mode := s.UpstreamFor(tt.p)
			if addr != tt.addr || mode != tt.tl {
				t.Errorf("UpstreamFor = %q, %q; want %q, %q", addr, mode, tt.addr, tt.tl)
			}
		})
	}
}

func TestAccountLookup(t *testing.T) {
	cfg := &Config{Accounts: []Account{{Login: "erp-billing"}, {Login: "Scanner"}}}
	for _, tt := range []struct {
		login string
		want  string
	}{{"erp-billing", "erp-billing"}, {"SCANNER", "Scanner"}, {"scanner", "Scanner"}, {"nobody", ""}, {"", ""}} {
		got := ""
		if a := cfg.Account(tt.login); a != nil {
			got = a.Login
		}
		if got != tt.want {
			t.Errorf("Account(%q) = %q, want %q", tt.login, got, tt.want)
		}
	}
}
