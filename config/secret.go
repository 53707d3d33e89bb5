package config

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"gopkg.in/yaml.v3"
)

// redacted is what a Secret prints as.
const redacted = "***"

// String returns "***" whatever the value.
func (s Secret) String() string { return redacted }

// GoString returns "***" so %#v does not reveal the value either.
func (s Secret) GoString() string { return redacted }

// Format prints "***" for every verb, so no fmt verb (%s, %q, %x, %d, ...)
// can print the value.
func (s Secret) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue makes slog print "***".
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// Reveal returns the secret value, for the one place that has to send it.
func (s Secret) Reveal() string { return string(s) }

// IsZero reports whether the secret is empty (for example a public client
// without client_secret).
func (s Secret) IsZero() bool { return s == "" }

// MarshalYAML writes "***" (or nothing for an empty secret), so a dumped
// configuration never carries the value.
func (s Secret) MarshalYAML() (any, error) { return s.marshalled(), nil }

// MarshalJSON writes "***" (or "" for an empty secret).
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.marshalled()) }

// MarshalText writes "***" (or nothing), for encoders that use TextMarshaler.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.marshalled()), nil }

func (s Secret) marshalled() string {
	if s == "" {
		return ""
	}
	return redacted
}

// UnmarshalYAML reads a duration with units ("30s", "31m", "1h30m"). A bare
// number is refused: it is unclear whether it means seconds or minutes.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a duration like 30s or 31m, got %s", kindName(n))
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("expected a duration like 30s or 31m, got %q", n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration with units.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// String formats the duration like time.Duration ("31m0s").
func (d Duration) String() string { return time.Duration(d).String() }
