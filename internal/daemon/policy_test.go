package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/xoauthd/xoauthd/proxy"
	"github.com/xoauthd/xoauthd/tokens"
)

// errTokens fails every Token and Refresh with err.
type errTokens struct{ err error }

func (e errTokens) Token(context.Context, string) (string, error)           { return "", e.err }
func (e errTokens) Refresh(context.Context, string, string) (string, error) { return "", e.err }

// TestClassifiedTokens checks the token adapter of the gateways: each class
// of token error carries the proxy's sentinel for the login failure policy,
// and keeps its text and its type for the log and its explanation.
func TestClassifiedTokens(t *testing.T) {
	tests := []struct {
		err     error
		outcome proxy.Outcome
		why     string // in the explanation
	}{
		{&tokens.NeedsLoginError{Identity: "a@contoso.test", Code: "AADSTS700082", Meaning: "refresh token expired",
			Fix: `run "xoauthd login a@contoso.test"`}, proxy.OutcomeSignInNeeded, "Refresh token expired (AADSTS700082)"},
		{fmt.Errorf("refreshing: %w", &tokens.ConfigError{Provider: "m365", Code: "AADSTS7000215", Meaning: "invalid client secret",
			Fix: "set a valid client_secret"}), proxy.OutcomeConfiguration, "Provider m365: invalid client secret (AADSTS7000215). Set a valid client_secret."},
		{&tokens.TemporaryError{Meaning: "the identity provider answered 503"}, proxy.OutcomeUnavailable, "The identity provider answered 503. Nothing to fix"},
		{errors.New("reading the token store: disk full"), proxy.OutcomeUnavailable, ""},
	}
	for _, tt := range tests {
		src := classifiedTokens{errTokens{tt.err}}
		for name, call := range map[string]func() error{
			"Token":   func() error { _, err := src.Token(context.Background(), "a@contoso.test"); return err },
			"Refresh": func() error { _, err := src.Refresh(context.Background(), "a@contoso.test", "old"); return err },
		} {
			err := call()
			if f := proxy.Classify(err); f.Outcome != tt.outcome {
				t.Errorf("%s(%v): outcome %d, want %d", name, tt.err, f.Outcome, tt.outcome)
			}
			if err.Error() != tt.err.Error() || !errors.Is(err, tt.err) {
				t.Errorf("%s: %q does not keep %q", name, err, tt.err)
			}
			why, ok := explainLogin(err, proxy.Account{Identity: "a@contoso.test"})
			if ok != (tt.why != "") || !strings.Contains(why, tt.why) {
				t.Errorf("%s(%v): why = %q, %v; want %q", name, tt.err, why, ok, tt.why)
			}
		}
	}
	if _, err := (classifiedTokens{opsTokens{}}).Token(context.Background(), "a"); err != nil {
		t.Errorf("a good token: %v", err)
	}
}
