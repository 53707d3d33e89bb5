package xoauth2

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-sasl"
)

// Mechanism is the SASL mechanism name.
const Mechanism = "XOAUTH2"

// maxChallenge bounds the decoded error challenge we accept from a server.
const maxChallenge = 4096

// InitialResponse returns the raw (not yet base64-encoded) client response:
// "user=" user "\x01auth=Bearer " token "\x01\x01".
func InitialResponse(user, token string) []byte {
	b := make([]byte, 0, len("user=")+len(user)+len("\x01auth=Bearer ")+len(token)+2)
	b = append(b, "user="...)
	b = append(b, user...)
	b = append(b, "\x01auth=Bearer "...)
	b = append(b, token...)
	return append(b, '\x01', '\x01')
}

// Encode returns the base64 (standard, padded) initial response, as sent on
// the wire after AUTHENTICATE XOAUTH2 / AUTH XOAUTH2.
func Encode(user, token string) string {
	return base64.StdEncoding.EncodeToString(InitialResponse(user, token))
}

// Challenge is the JSON error a server sends as a SASL challenge when it
// rejects the token, before its final failure reply.
type Challenge struct {
	Status  string `json:"status"`
	Schemes string `json:"schemes"`
	Scope   string `json:"scope"`
}

// Retry reports whether the status says the token was bad (400 or 401), so a
// refreshed token may succeed.
func (c Challenge) Retry() bool { return c.Status == "400" || c.Status == "401" }

// DecodeChallenge decodes a server challenge given as the base64 text after
// "+ " (IMAP, POP3) or "334 " (SMTP).
func DecodeChallenge(b64 string) (Challenge, error) {
	b64 = strings.TrimSpace(b64)
	if base64.StdEncoding.DecodedLen(len(b64)) > maxChallenge {
		return Challenge{}, errors.New("xoauth2 challenge too long")
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return Challenge{}, fmt.Errorf("decoding xoauth2 challenge: %w", err)
	}
	return ParseChallenge(raw)
}

// ParseChallenge parses an already decoded challenge.
func ParseChallenge(raw []byte) (Challenge, error) {
	if len(raw) > maxChallenge {
		return Challenge{}, errors.New("xoauth2 challenge too long")
	}
	var c Challenge
	if err := json.Unmarshal(raw, &c); err != nil {
		return Challenge{}, fmt.Errorf("parsing xoauth2 challenge: %w", err)
	}
	return c, nil
}

// Error is returned by the Client when the server sent an error challenge.
type Error struct{ Challenge Challenge }

func (e *Error) Error() string {
	return fmt.Sprintf("xoauth2: server rejected the token (status %s)", e.Challenge.Status)
}

// client is a go-sasl Client for XOAUTH2.
type client struct {
	user, token string
	noIR        bool // send the response after the server's empty challenge
	sent        bool // the response has been sent
	failed      *Challenge
}

// NewClient returns a sasl.Client that sends the initial response and answers
// an error challenge with an empty response, as the protocol requires (go-imap's
// client would send "=", which Dovecot rejects as invalid base64).
func NewClient(user, token string) sasl.Client {
	return &client{user: user, token: token}
}

// NewContinuationClient is NewClient without an initial response: the
// response goes after the server's first (empty) challenge, as
// "AUTH XOAUTH2" / "334 " / "<base64>". Use it where a command line with the
// token would exceed the server's limit (Dovecot's submission service
// answers "500 5.5.2 Line too long" to an inline response with a long token).
func NewContinuationClient(user, token string) sasl.Client {
	return &client{user: user, token: token, noIR: true}
}

func (c *client) Start() (string, []byte, error) {
	if c.noIR {
		return Mechanism, nil, nil
	}
	c.sent = true
	return Mechanism, InitialResponse(c.user, c.token), nil
}

func (c *client) Next(challenge []byte) ([]byte, error) {
	if !c.sent {
		c.sent = true
		return InitialResponse(c.user, c.token), nil
	}
	if c.failed != nil {
		return nil, &Error{Challenge: *c.failed}
	}
	ch, err := ParseChallenge(challenge)
	if err != nil {
		ch = Challenge{}
	}
	c.failed = &ch
	return []byte{}, nil
}
