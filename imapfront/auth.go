package imapfront

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"strings"
)

// SASL continuation requests of AUTHENTICATE LOGIN (base64 "Username:" and
// "Password:"), the de facto standard of the LOGIN mechanism.
const (
	promptUsername = "+ VXNlcm5hbWU6"
	promptPassword = "+ UGFzc3dvcmQ6"
	promptEmpty    = "+ "
)

// credentials reads the login and password of LOGIN or AUTHENTICATE. When
// it has none (a syntax error, a cancelled exchange) it has answered the
// client, and goOn says whether the session continues.
func (s *session) credentials(cmd *command) (user, pass string, ok, goOn bool) {
	if cmd.name == "LOGIN" {
		// RFC 3501 §6.2.3: LOGIN userid password, both astrings.
		if len(cmd.args) != 2 || !cmd.args[0].isString() || !cmd.args[1].isString() {
			return "", "", false, s.badf(cmd.tag, "LOGIN needs a user name and a password")
		}
		return cmd.args[0].s, cmd.args[1].s, true, true
	}
	// RFC 3501 §6.2.2, RFC 4959 (SASL-IR).
	if len(cmd.args) < 1 || len(cmd.args) > 2 || cmd.args[0].kind != argAtom ||
		(len(cmd.args) == 2 && cmd.args[1].kind != argAtom) {
		return "", "", false, s.badf(cmd.tag, "AUTHENTICATE needs a mechanism and at most an initial response")
	}
	var ir *string
	if len(cmd.args) == 2 {
		ir = &cmd.args[1].s
	}
	switch strings.ToUpper(cmd.args[0].s) {
	case "PLAIN":
		return s.plain(cmd.tag, ir)
	case "LOGIN":
		return s.saslLogin(cmd.tag, ir)
	}
	if s.writeLine(cmd.tag+" NO Unsupported authentication mechanism") != nil {
		return "", "", false, false
	}
	return "", "", false, s.countFailure()
}

// errCancelled means the client answered a SASL challenge with "*".
var errCancelled = errors.New("authentication cancelled by the client")

// errBase64 means a SASL response was not valid base64.
var errBase64 = errors.New("invalid base64 in sasl response")

// plain runs SASL PLAIN (RFC 4616): [authzid] NUL authcid NUL passwd.
func (s *session) plain(tag string, ir *string) (user, pass string, ok, goOn bool) {
	resp, err := s.saslStep(ir, promptEmpty)
	if err != nil {
		return s.saslFailed(tag, err)
	}
	parts := bytes.Split(resp, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 {
		return "", "", false, s.badf(tag, "Invalid PLAIN response")
	}
	authz, authc := string(parts[0]), string(parts[1])
	if authz != "" && authz != authc {
		// Logging in as someone else (proxy authorization) is not offered.
		if s.writeLine(tag+" NO [AUTHORIZATIONFAILED] Authorization identity not supported.") != nil {
			return "", "", false, false
		}
		return "", "", false, s.countFailure()
	}
	return authc, string(parts[2]), true, true
}

// saslLogin runs the LOGIN mechanism: user name, then password, each after
// its prompt; an initial response is the user name.
func (s *session) saslLogin(tag string, ir *string) (user, pass string, ok, goOn bool) {
	u, err := s.saslStep(ir, promptUsername)
	if err != nil {
		return s.saslFailed(tag, err)
	}
	p, err := s.saslStep(nil, promptPassword)
	if err != nil {
		return s.saslFailed(tag, err)
	}
	if len(u) == 0 {
		return "", "", false, s.badf(tag, "Empty user name")
	}
	return string(u), string(p), true, true
}

// saslStep returns the decoded initial response when there is one, or sends
// prompt and reads the client's response line. "=" is an empty response.
func (s *session) saslStep(ir *string, prompt string) ([]byte, error) {
	var line string
	if ir != nil {
		line = *ir
	} else {
		if err := s.writeLine(prompt); err != nil {
			return nil, err
		}
		b, err := s.r.readLine()
		if err != nil {
			return nil, err
		}
		line = string(b)
	}
	switch line {
	case "*":
		return nil, errCancelled
	case "=":
		return []byte{}, nil
	}
	b, err := base64.StdEncoding.DecodeString(line)
	if err != nil {
		// Some clients leave out the padding.
		if b, err = base64.RawStdEncoding.DecodeString(line); err != nil {
			return nil, errBase64
		}
	}
	return b, nil
}

// saslFailed answers a failed SASL step.
func (s *session) saslFailed(tag string, err error) (user, pass string, ok, goOn bool) {
	var pe *parseError
	switch {
	case errors.Is(err, errCancelled):
		// RFC 3501 §6.2.2: a cancelled exchange is answered BAD; it is not
		// counted as a client error.
		return "", "", false, s.writeLine(tag+" BAD Authentication cancelled") == nil
	case errors.Is(err, errBase64):
		return "", "", false, s.badf(tag, "Invalid base64 in SASL response")
	case errors.As(err, &pe):
		s.bye(pe.msg)
	case errors.Is(err, os.ErrDeadlineExceeded) && s.draining():
		s.bye(byeShutdown)
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.bye(autologout)
	}
	return "", "", false, false
}

// countFailure counts a failed login and reports whether the session goes
// on: after maxAuthFailures it ends with BYE.
func (s *session) countFailure() bool {
	if s.failures++; s.failures >= maxAuthFailures {
		s.bye("Too many failed logins")
		return false
	}
	return true
}
