package testidp

import (
	"net/http"
	"net/url"
)

// discoveryBody is the subset of OpenID Connect Discovery 1.0 §3 metadata
// this IdP can honour.
type discoveryBody struct {
	Issuer                        string   `json:"issuer"`
	AuthorizationEndpoint         string   `json:"authorization_endpoint"`
	TokenEndpoint                 string   `json:"token_endpoint"`
	DeviceAuthorizationEndpoint   string   `json:"device_authorization_endpoint"`
	ResponseTypesSupported        []string `json:"response_types_supported"`
	ResponseModesSupported        []string `json:"response_modes_supported"`
	GrantTypesSupported           []string `json:"grant_types_supported"`
	TokenEndpointAuthMethods      []string `json:"token_endpoint_auth_methods_supported"`
	CodeChallengeMethodsSupported []string `json:"code_challenge_methods_supported"`
	ScopesSupported               []string `json:"scopes_supported"`
	IDTokenSigningAlgs            []string `json:"id_token_signing_alg_values_supported"`
}

// handleDiscovery serves GET /{tenant}/v2.0/.well-known/openid-configuration.
func (p *IdP) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	if _, ok := p.tenantKind(tenant); !ok {
		p.writeError(w, r, errTenantNotFound(tenant))
		return
	}
	base := p.authority + "/" + url.PathEscape(tenant) + "/oauth2/v2.0/"
	writeJSON(w, http.StatusOK, discoveryBody{
		Issuer:                        p.opts.Issuer,
		AuthorizationEndpoint:         base + "authorize",
		TokenEndpoint:                 base + "token",
		DeviceAuthorizationEndpoint:   base + "devicecode",
		ResponseTypesSupported:        []string{"code"},
		ResponseModesSupported:        []string{"query"},
		GrantTypesSupported:           []string{grantAuthCode, grantRefresh, grantDeviceCode, grantClientCreds},
		TokenEndpointAuthMethods:      []string{"client_secret_post", "client_secret_basic", "private_key_jwt"},
		CodeChallengeMethodsSupported: []string{"S256", "plain"},
		ScopesSupported:               []string{"openid", "profile", "email", "offline_access"},
		IDTokenSigningAlgs:            []string{"HS256"},
	})
}
