package tokens

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

const (
	// maxDescription bounds how much of a provider's error_description is
	// repeated in messages (Microsoft appends trace and correlation ids).
	maxDescription = 300
	// maxRetryAfter caps a Retry-After header so a broken value cannot park
	// an identity for days.
	maxRetryAfter = time.Hour
	// defaultRetryAfter is the back-off after a 429 without Retry-After.
	defaultRetryAfter = 30 * time.Second
	// maxCodeDigits is the longest AADSTS number read from a description.
	maxCodeDigits = 9
)

// oauthError is one error answer of a token, device or authorize endpoint
// (RFC 6749 §5.2 plus Microsoft's error_codes).
type oauthError struct {
	Status      int    // HTTP status; 0 for an authorize redirect
	Error       string `json:"error"`
	Description string `json:"error_description"`
	Codes       []int  `json:"error_codes"`
	RetryAfter  time.Duration
}

// parseErrorBody reads the JSON error fields of a response body. It reports
// false when the body is not a JSON object.
func parseErrorBody(body []byte) (oauthError, bool) {
	var oe oauthError
	if err := json.Unmarshal(body, &oe); err != nil {
		return oauthError{}, false
	}
	return oe, true
}

// code returns the AADSTS number: the first of error_codes, else the number
// that Microsoft puts at the start of error_description ("AADSTS700082: ...").
func (oe oauthError) code() int {
	if len(oe.Codes) > 0 {
		return oe.Codes[0]
	}
	d, ok := strings.CutPrefix(oe.Description, "AADSTS")
	if !ok {
		return 0
	}
	end := 0
	for end < len(d) && d[end] >= '0' && d[end] <= '9' {
		end++
	}
	if end > maxCodeDigits {
		return 0
	}
	n, err := strconv.Atoi(d[:end])
	if err != nil {
		return 0
	}
	return n
}

// firstLine returns the first line of a provider description, bounded.
func firstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimSpace(s)
	if len(s) > maxDescription {
		s = s[:maxDescription] + "..."
	}
	return s
}

// parseRetryAfter reads a Retry-After header (seconds or an HTTP date).
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.Atoi(v); err == nil {
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// classify turns an error of a token request into a NeedsLoginError,
// TemporaryError or ConfigError. Errors that are already classified pass
// through unchanged.
func classify(err error, identity, provider string, now time.Time) error {
	var (
		nl *NeedsLoginError
		te *TemporaryError
		ce *ConfigError
	)
	if err == nil || errors.As(err, &nl) || errors.As(err, &te) || errors.As(err, &ce) {
		return err
	}
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		meaning := "could not reach the identity provider"
		if errors.Is(err, context.DeadlineExceeded) {
			meaning = "the identity provider did not answer in time"
		}
		return &TemporaryError{Identity: identity, Meaning: meaning, Err: err}
	}
	oe := oauthError{Error: re.ErrorCode, Description: re.ErrorDescription}
	if parsed, ok := parseErrorBody(re.Body); ok {
		oe.Codes = parsed.Codes
	}
	if re.Response != nil {
		oe.Status = re.Response.StatusCode
		oe.RetryAfter = parseRetryAfter(re.Response.Header.Get("Retry-After"), now)
	}
	return classifyResponse(oe, identity, provider, now, err)
}

// classifyResponse decides the class of a provider error: by the "error"
// field first, then by the AADSTS code, then by the HTTP status.
func classifyResponse(oe oauthError, identity, provider string, now time.Time, cause error) error {
	cls, code, meaning, advice := describeResponse(oe)
	if cause == nil {
		cause = errors.New(describe(firstLine(oe.Description), oe.Error, ""))
	}
	switch cls {
	case classNeedsLogin:
		fix := loginCommand(identity)
		if advice != "" {
			fix += " (" + advice + ")"
		}
		return &NeedsLoginError{Identity: identity, Code: code, Meaning: meaning, Fix: fix, Err: cause}
	case classTemporary:
		te := &TemporaryError{Identity: identity, Code: code, Meaning: meaning, Err: cause}
		if oe.Status == http.StatusTooManyRequests || oe.RetryAfter > 0 {
			wait := oe.RetryAfter
			if wait <= 0 {
				wait = defaultRetryAfter
			}
			te.RetryAt = now.Add(wait)
		}
		return te
	default:
		if advice == "" {
			advice = "check the provider settings and the app registration"
		}
		return &ConfigError{Identity: identity, Provider: provider, Code: code, Meaning: meaning, Fix: advice, Err: cause}
	}
}

// describeResponse returns the class of a provider error and its code,
// meaning and advice in words.
func describeResponse(oe oauthError) (cls class, code, meaning, advice string) {
	num := oe.code()
	entry, known := entraCodes[num]
	cls, ok := errorFieldClass[oe.Error]
	switch {
	case ok:
	case known:
		cls = entry.class
	case oe.Status == http.StatusTooManyRequests || oe.Status >= 500:
		cls = classTemporary
	default:
		cls = classConfiguration
	}

	code = oe.Error
	switch {
	case known:
		code, meaning, advice = fmt.Sprintf("AADSTS%d", num), entry.meaning, entry.advice
	case num != 0:
		code = fmt.Sprintf("AADSTS%d", num)
		text := firstLine(oe.Description)
		if rest, ok := strings.CutPrefix(text, code+":"); ok {
			text = strings.TrimSpace(rest)
		}
		if text == "" {
			text = "no description"
		}
		meaning = "unknown error code, the provider says: " + text
	case oe.Description != "":
		meaning = firstLine(oe.Description)
	case oe.Error != "":
		meaning = "the identity provider answered " + strconv.Quote(oe.Error)
	default:
		meaning = fmt.Sprintf("the identity provider answered HTTP %d", oe.Status)
	}
	if m, ok := errorFieldMeaning[oe.Error]; ok {
		meaning, advice = m, ""
	}
	return cls, code, meaning, advice
}
