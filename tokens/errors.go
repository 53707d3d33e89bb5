package tokens

import (
	"errors"
	"fmt"
	"time"
)

// Sentinels for errors.Is. Every error the Manager and the flows return that
// comes from the identity provider matches exactly one of them.
var (
	// ErrNeedsLogin means the stored refresh token cannot be used any more (or
	// there is none): a person must run "xoauthd login IDENTITY" again.
	ErrNeedsLogin = errors.New("a new interactive login is needed")
	// ErrTemporary means the identity provider could not be reached, failed
	// or asked to slow down; the stored token is intact and a later attempt
	// may succeed without anyone doing anything.
	ErrTemporary = errors.New("temporary failure at the identity provider")
	// ErrConfiguration means the identity provider rejected the app
	// registration, the provider settings or the account itself (wrong client
	// secret, missing permission, blocked by policy). A new login alone does
	// not help; someone must change the configuration or the tenant.
	ErrConfiguration = errors.New("identity provider rejected the configuration")
)

// IsTemporary reports whether err is a temporary failure (ErrTemporary).
func IsTemporary(err error) bool { return errors.Is(err, ErrTemporary) }

// NeedsLoginError is returned when an identity has no usable refresh token.
// It matches ErrNeedsLogin with errors.Is.
type NeedsLoginError struct {
	Identity string
	Code     string // e.g. "AADSTS700082"; empty when there is no provider code
	Meaning  string // in plain words, e.g. "refresh token expired"
	Fix      string // what to do, ending with the login command
	Err      error  // the underlying error, if any
}

// Error says what happened and the command that fixes it.
func (e *NeedsLoginError) Error() string {
	return describe(e.Meaning, e.Code, e.Fix)
}

// Is makes errors.Is(err, ErrNeedsLogin) true.
func (e *NeedsLoginError) Is(target error) bool { return target == ErrNeedsLogin }

// Unwrap returns the underlying error.
func (e *NeedsLoginError) Unwrap() error { return e.Err }

// NeedsLogin returns the provider's code, the meaning and the fix, for
// explanations that match this method rather than the type (package
// diagnose, so that it does not depend on tokens).
func (e *NeedsLoginError) NeedsLogin() (code, meaning, fix string) { return e.Code, e.Meaning, e.Fix }

// TemporaryError is a failure that should go away by itself: network errors,
// timeouts, HTTP 5xx, throttling. It matches ErrTemporary with errors.Is.
type TemporaryError struct {
	Identity string
	Code     string    // provider error code when there is one
	Meaning  string    // in plain words
	RetryAt  time.Time // no new request to the provider before this; zero: any time
	Err      error
}

// Error says what happened and when xoauthd tries again.
func (e *TemporaryError) Error() string {
	fix := "xoauthd retries by itself"
	if !e.RetryAt.IsZero() {
		fix = "xoauthd retries after " + e.RetryAt.Local().Format(time.TimeOnly)
	}
	return describe(e.Meaning, e.Code, fix)
}

// Is makes errors.Is(err, ErrTemporary) true.
func (e *TemporaryError) Is(target error) bool { return target == ErrTemporary }

// Unwrap returns the underlying error.
func (e *TemporaryError) Unwrap() error { return e.Err }

// TemporaryFailure returns the provider's code, the meaning and when
// xoauthd tries again (see NeedsLogin).
func (e *TemporaryError) TemporaryFailure() (code, meaning string, retryAt time.Time) {
	return e.Code, e.Meaning, e.RetryAt
}

// ConfigError means the provider refused the app registration, a provider
// setting or the account (see ErrConfiguration).
type ConfigError struct {
	Identity string
	Provider string
	Code     string
	Meaning  string
	Fix      string
	Err      error
}

// Error says what the provider refused and what to change.
func (e *ConfigError) Error() string {
	meaning := e.Meaning
	if e.Provider != "" {
		meaning = fmt.Sprintf("provider %s: %s", e.Provider, meaning)
	}
	return describe(meaning, e.Code, e.Fix)
}

// Is makes errors.Is(err, ErrConfiguration) true.
func (e *ConfigError) Is(target error) bool { return target == ErrConfiguration }

// Unwrap returns the underlying error.
func (e *ConfigError) Unwrap() error { return e.Err }

// ConfigurationProblem returns the provider's name and code, the meaning
// and the fix (see NeedsLogin).
func (e *ConfigError) ConfigurationProblem() (provider, code, meaning, fix string) {
	return e.Provider, e.Code, e.Meaning, e.Fix
}

// describe formats "meaning (CODE): fix" leaving out empty parts.
func describe(meaning, code, fix string) string {
	s := meaning
	if code != "" {
		s += " (" + code + ")"
	}
	if fix != "" {
		s += ": " + fix
	}
	return s
}

// loginCommand is the command that gives identity a new refresh token.
func loginCommand(identity string) string {
	return fmt.Sprintf("run %q", "xoauthd login "+identity)
}

// AccountMismatch returns the identity asked for and the account that
// signed in (see NeedsLoginError.NeedsLogin).
func (e *IdentityMismatchError) AccountMismatch() (identity, signedIn string) {
	return e.Identity, e.SignedIn
}

// IdentityMismatchError is returned by Login when the person signed in with
// another account than the identity being logged in. Nothing is stored.
type IdentityMismatchError struct {
	Identity string // the identity that was asked for
	SignedIn string // the account the provider says signed in
}

// Error names both accounts and how to sign in with the right one.
func (e *IdentityMismatchError) Error() string {
	return fmt.Sprintf("signed in as %s, but this login is for %s; nothing was stored: "+
		"run the login again and pick %s in the account chooser, or open the link in a private "+
		"browser window (or sign out of %s first) so the browser does not reuse the other session",
		e.SignedIn, e.Identity, e.Identity, e.SignedIn)
}
