package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// SendRate is a limit on messages sent through SMTP per identity: Messages
// per Per. The zero SendRate (written 0) is no limit.
type SendRate struct {
	Messages int
	Per      time.Duration
}

// rateUnits are the units a send_rate may be written with.
var rateUnits = map[string]time.Duration{
	"s": time.Second, "sec": time.Second, "second": time.Second,
	"m": time.Minute, "min": time.Minute, "minute": time.Minute,
	"h": time.Hour, "hour": time.Hour,
}

// maxRateMessages bounds the messages of a send_rate (beyond it, pacing
// would not be pacing anything).
const maxRateMessages = 1_000_000

// UnmarshalYAML reads a send_rate: "30/min", "5/s", "1000/hour", or 0 for
// no limit. A bare number other than 0 is refused: it is unclear per what.
func (r *SendRate) UnmarshalYAML(n *yaml.Node) error {
	const want = "a rate like 30/min, 5/s or 1000/hour, or 0 for no limit"
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected %s, got %s", want, kindName(n))
	}
	v, err := ParseSendRate(n.Value)
	if err != nil {
		return fmt.Errorf("expected %s, got %q", want, n.Value)
	}
	*r = v
	return nil
}

// ParseSendRate parses the text of a send_rate (see UnmarshalYAML).
func ParseSendRate(s string) (SendRate, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return SendRate{}, nil
	}
	num, unit, ok := strings.Cut(s, "/")
	if !ok {
		return SendRate{}, fmt.Errorf("send rate %q has no unit", s)
	}
	n, err := strconv.Atoi(strings.TrimSpace(num))
	per, known := rateUnits[strings.ToLower(strings.TrimSpace(unit))]
	if err != nil || !known || n < 0 || n > maxRateMessages {
		return SendRate{}, fmt.Errorf("send rate %q is not a number per s, min or hour", s)
	}
	if n == 0 {
		return SendRate{}, nil
	}
	return SendRate{Messages: n, Per: per}, nil
}

// Off reports whether the rate is no limit.
func (r SendRate) Off() bool { return r.Messages <= 0 || r.Per <= 0 }

// String writes the rate as it is configured ("30/min"; "0" when off).
func (r SendRate) String() string {
	switch {
	case r.Off():
		return "0"
	case r.Per == time.Second:
		return fmt.Sprintf("%d/s", r.Messages)
	case r.Per == time.Minute:
		return fmt.Sprintf("%d/min", r.Messages)
	case r.Per == time.Hour:
		return fmt.Sprintf("%d/hour", r.Messages)
	}
	return fmt.Sprintf("%d/%s", r.Messages, r.Per)
}

// MarshalYAML writes the rate as it is configured.
func (r SendRate) MarshalYAML() (any, error) { return r.String(), nil }

// DefaultSendRate is the sending limit of a provider type when neither the
// account nor the server sets send_rate:
//   - microsoft: 30 messages a minute, Exchange Online's documented limit
//     for SMTP AUTH submission per mailbox.
//   - google: none. Gmail documents daily sending limits (per user and
//     day), no per-minute one; a bucket per minute cannot keep a daily
//     limit without slowing every burst for nothing.
//   - custom: none; the server's limits are not known.
func DefaultSendRate(providerType string) SendRate {
	if providerType == TypeMicrosoft {
		return SendRate{Messages: 30, Per: time.Minute}
	}
	return SendRate{}
}

// SendRateFor returns the sending limit of acct on the SMTP server srv:
// the account's send_rate, else the server's, else its provider's default.
func (c *Config) SendRateFor(srv *Server, acct *Account) SendRate {
	switch {
	case acct != nil && acct.SendRate != nil:
		return *acct.SendRate
	case srv != nil && srv.SendRate != nil:
		return *srv.SendRate
	case acct != nil && c.Providers[acct.Provider] != nil:
		return DefaultSendRate(c.Providers[acct.Provider].Type)
	}
	return SendRate{}
}
