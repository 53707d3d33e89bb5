package check

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/diagnose"
	"github.com/xoauthd/xoauthd/tokens"
)

// maxJWTPayload bounds the access token payload decoded to show its scopes.
const maxJWTPayload = 16 << 10

// configStep reports the account's provider, identity and mailbox.
func (c *Checker) configStep(a config.Account) (*config.Provider, Step) {
	s := Step{Name: "config"}
	p := c.opts.Config.Providers[a.Provider]
	acct := diagnose.Account{Identity: a.Identity, Mailbox: a.Mailbox}
	if p == nil {
		s.fail("no provider", fmt.Errorf("account %s names provider %q, which is not configured", a.Login, a.Provider), acct)
		return nil, s
	}
	s.pass(fmt.Sprintf("provider %s (%s, %s flow); identity %s; mailbox %s", p.Name, p.Type, p.Flow, a.Identity, a.Mailbox))
	if !strings.EqualFold(a.Identity, a.Mailbox) {
		s.Details = append(s.Details, fmt.Sprintf("IMAP and POP3 open %s with the token of %s (it needs FullAccess); "+
			"SMTP authenticates as %s, so sending from %s needs Send As", a.Mailbox, a.Identity, a.Identity, a.Mailbox))
	}
	return p, s
}

// tokenStep forces a refresh of the account's access token through
// Options.Tokens and reports expiry, scopes and
// the signed-in user. It returns the token the mail steps use: the new one,
// or after a failed refresh a cached one that is still valid ("" if none).
func (c *Checker) tokenStep(ctx context.Context, a config.Account, p *config.Provider, acct diagnose.Account) (string, Step) {
	s := Step{Name: "token"}
	ctx, cancel := context.WithTimeout(ctx, c.opts.StepTimeout)
	defer cancel()
	if p.Flow != config.FlowClientCredentials {
		switch {
		case c.opts.StoreError != nil:
			s.fail("cannot open the token store", c.opts.StoreError, acct)
			return "", s
		case c.opts.StoreMissing:
			s.fail("no token stored", &tokens.NeedsLoginError{Identity: a.Identity,
				Meaning: "no token is stored for " + a.Identity + " (there is no token store yet)",
				Fix:     fmt.Sprintf("run %q", "xoauthd login "+a.Identity)}, acct)
			return "", s
		}
	}
	m := c.opts.Tokens(p)
	if p.Flow == config.FlowClientCredentials {
		tok, err := m.Token(ctx, a.Identity)
		if err != nil {
			s.fail("getting an app-only token (client credentials) failed", err, acct)
			return "", s
		}
		c.describeToken(&s, p, tok, "app-only token (client credentials) issued")
		return tok, s
	}
	tok, cached, err := forceRefresh(ctx, m, a.Identity)
	if err != nil {
		s.fail("refreshing the access token failed", err, acct)
		if cached != "" {
			s.Details = append(s.Details, "the steps below use the cached access token, which is still valid")
		}
		return cached, s
	}
	st, _, err := m.Status(a.Identity)
	if err != nil {
		s.fail("reading the token store failed", err, acct)
		return "", s
	}
	s.Expiry, s.SignedIn = st.Expiry.Truncate(time.Second), st.User
	if st.User != "" && !strings.EqualFold(st.User, a.Identity) {
		s.fail("the stored token belongs to "+st.User, &tokens.IdentityMismatchError{Identity: a.Identity, SignedIn: st.User}, acct)
		return "", s
	}
	if st.User == "" {
		s.Details = append(s.Details, "the provider did not say who signed in (no id_token)")
	} else {
		s.Details = append(s.Details, "signed in as "+st.User)
	}
	c.describeToken(&s, p, tok, "refreshed")
	return tok, s
}

// forceRefresh returns a newly refreshed access token for identity: Token
// refreshes when the cached one is old; otherwise Refresh forces it. After
// a failure, cached is the still valid token Token returned, if any.
func forceRefresh(ctx context.Context, m Tokens, identity string) (tok, cached string, err error) {
	before, _, err := m.Status(identity)
	if err != nil {
		return "", "", err
	}
	cached, err = m.Token(ctx, identity)
	if err != nil {
		return "", "", err
	}
	after, _, err := m.Status(identity)
	if err != nil {
		return "", "", err
	}
	if !after.LastRefresh.Equal(before.LastRefresh) {
		return cached, "", nil
	}
	tok, err = m.Refresh(ctx, identity, cached)
	if err != nil {
		return "", cached, err
	}
	return tok, "", nil
}

// describeToken passes the token step with its expiry and scopes. Microsoft
// access tokens for Exchange are JWTs; their claims are read, not verified,
// only to show them. An opaque token shows no scopes.
func (c *Checker) describeToken(s *Step, p *config.Provider, tok, what string) {
	claims, ok := readClaims(tok)
	if s.Expiry.IsZero() && ok && claims.Exp > 0 {
		s.Expiry = time.Unix(claims.Exp, 0)
	}
	summary := what
	if !s.Expiry.IsZero() {
		summary += "; valid until " + When(s.Expiry, c.opts.Now())
	}
	s.pass(summary)
	if !ok {
		return
	}
	s.Scopes = claims.scopes()
	if len(s.Scopes) > 0 {
		s.Details = append(s.Details, "permissions: "+strings.Join(s.Scopes, " "))
	}
	if p.Type != config.TypeMicrosoft {
		return
	}
	if claims.graph() {
		s.Details = append(s.Details, "note: the token is for Microsoft Graph, which Exchange refuses; "+
			"the provider's scopes must be on https://outlook.office.com/")
	}
	for _, proto := range []string{config.ProtoIMAP, config.ProtoPOP3, config.ProtoSMTP} {
		need := neededPermission(proto, p.Flow == config.FlowClientCredentials)
		if len(s.Scopes) > 0 && len(serversFor(c.opts.Config, proto)) > 0 && !slices.Contains(s.Scopes, need) {
			s.Details = append(s.Details, fmt.Sprintf("note: the token lacks %s, so %s will fail", need, proto))
		}
	}
}

// neededPermission is the Exchange Online permission a protocol needs.
func neededPermission(proto string, app bool) string {
	delegated := map[string]string{config.ProtoIMAP: "IMAP.AccessAsUser.All", config.ProtoPOP3: "POP.AccessAsUser.All", config.ProtoSMTP: "SMTP.Send"}
	appOnly := map[string]string{config.ProtoIMAP: "IMAP.AccessAsApp", config.ProtoPOP3: "POP.AccessAsApp", config.ProtoSMTP: "SMTP.SendAsApp"}
	if app {
		return appOnly[proto]
	}
	return delegated[proto]
}

// accessClaims are the access token claims the token step shows.
type accessClaims struct {
	Aud   json.RawMessage `json:"aud"`   // a string or a list
	Scp   string          `json:"scp"`   // delegated permissions, space-separated
	Roles []string        `json:"roles"` // application permissions
	Exp   int64           `json:"exp"`
}

// readClaims decodes the payload of a JWT without verifying it.
func readClaims(tok string) (accessClaims, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || len(parts[1]) > maxJWTPayload {
		return accessClaims{}, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return accessClaims{}, false
	}
	var c accessClaims
	if json.Unmarshal(raw, &c) != nil {
		return accessClaims{}, false
	}
	return c, true
}

// scopes returns the delegated and application permissions.
func (c accessClaims) scopes() []string {
	return append(strings.Fields(c.Scp), c.Roles...)
}

// graph reports whether the token's audience is Microsoft Graph.
func (c accessClaims) graph() bool {
	var auds []string
	var one string
	if json.Unmarshal(c.Aud, &one) == nil {
		auds = []string{one}
	} else {
		_ = json.Unmarshal(c.Aud, &auds)
	}
	for _, a := range auds {
		a = strings.TrimSuffix(strings.ToLower(a), "/")
		if a == "https://graph.microsoft.com" || a == "00000003-0000-0000-c000-000000000000" {
			return true
		}
	}
	return false
}
