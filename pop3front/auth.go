package pop3front

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/xoauthd/xoauthd/proxy"
)

// Replies of USER, PASS and AUTH that do not come from the login itself.
const (
	replyBadMech    = "-ERR Unsupported authentication mechanism.\r\n"
	replySyntax     = "-ERR Syntax error.\r\n"
	replyCancelled  = "-ERR Authentication cancelled.\r\n"
	replyBadBase64  = "-ERR Invalid base64 data.\r\n"
	replyMalformed  = "-ERR Malformed authentication response.\r\n"
	challengeEmpty  = ""
	challengeUser   = "VXNlcm5hbWU6" // base64("Username:"), as AUTH LOGIN servers send
	challengePasswd = "UGFzc3dvcmQ6" // base64("Password:")
)

// Errors of a SASL exchange that the client caused. Each gets its own -ERR
// reply; errAuthzid counts as a failed login.
var (
	errCancelled = errors.New("client cancelled the authentication")
	errBadBase64 = errors.New("invalid base64 in sasl response")
	errMalformed = errors.New("malformed sasl response")
	errAuthzid   = fmt.Errorf("authorization identity differs from the login; proxy authorization is not supported: %w", proxy.ErrBadCredentials)
)

// readError wraps a failed read or write of the connection during a SASL
// exchange: the session ends.
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// handleUSER remembers the user name for PASS (RFC 1939 §7). It does not say
// whether the name exists.
func (s *session) handleUSER(cmd command) {
	if cmd.arg == "" {
		s.fail(replyMissingUser)
		return
	}
	s.user = cmd.arg
	s.write(replyUserOK)
}

// handlePASS logs in with the name from USER and everything after "PASS " as
// the password, spaces included (RFC 1939 §7).
func (s *session) handlePASS(ctx context.Context, cmd command) (done bool) {
	user := s.user
	s.user = ""
	if user == "" {
		s.fail(replyNoUser)
		return s.writeErr != nil
	}
	return s.login(ctx, "USER", user, cmd.arg)
}

// handleAUTH runs AUTH (RFC 5034): without an argument it lists the
// mechanisms, otherwise it runs PLAIN or LOGIN, each with an optional initial
// response.
func (s *session) handleAUTH(ctx context.Context, cmd command) (done bool) {
	s.user = ""
	mech, ir, hasIR := strings.Cut(cmd.arg, " ")
	switch {
	case mech == "" && !hasIR:
		s.write(mechListing)
		return s.writeErr != nil
	case mech == "" || (hasIR && (ir == "" || strings.Contains(ir, " "))):
		s.fail(replySyntax)
		return s.writeErr != nil
	}
	mech = strings.ToUpper(mech)
	var login, password string
	var err error
	switch mech {
	case "PLAIN":
		login, password, err = s.saslPLAIN(ir, hasIR)
	case "LOGIN":
		login, password, err = s.saslLOGIN(ir, hasIR)
	default:
		s.fail(replyBadMech)
		return s.writeErr != nil
	}
	if err != nil {
		return s.saslFailed(ctx, mech, login, err)
	}
	return s.login(ctx, mech, login, password)
}

// saslFailed answers a SASL exchange that ended without credentials.
func (s *session) saslFailed(ctx context.Context, mech, login string, err error) (done bool) {
	var re *readError
	switch {
	case errors.As(err, &re):
		s.readFailed(ctx, re.err)
		return true
	case errors.Is(err, errCancelled):
		s.fail(replyCancelled)
	case errors.Is(err, errBadBase64):
		s.fail(replyBadBase64)
	case errors.Is(err, errAuthzid):
		s.loginFailed(ctx, mech, login, proxy.Account{}, err)
	default:
		s.fail(replyMalformed)
	}
	return s.writeErr != nil
}

// saslPLAIN gets a PLAIN message (RFC 4616) and returns the login and the
// password in it.
func (s *session) saslPLAIN(ir string, hasIR bool) (login, password string, err error) {
	msg, err := s.saslResponse(ir, hasIR, challengeEmpty)
	if err != nil {
		return "", "", err
	}
	return decodePLAIN(msg)
}

// saslLOGIN runs the LOGIN mechanism: user name (or the initial response),
// then password, each in base64.
func (s *session) saslLOGIN(ir string, hasIR bool) (login, password string, err error) {
	user, err := s.saslResponse(ir, hasIR, challengeUser)
	if err != nil {
		return "", "", err
	}
	if len(user) == 0 {
		return "", "", errMalformed
	}
	pass, err := s.saslResponse("", false, challengePasswd)
	if err != nil {
		return "", "", err
	}
	return string(user), string(pass), nil
}

// saslResponse returns the decoded initial response when the AUTH line had
// one, else it sends the challenge as a continuation and decodes the line
// the client answers with (RFC 5034 §4).
func (s *session) saslResponse(ir string, hasIR bool, challenge string) ([]byte, error) {
	if hasIR {
		return decodeSASL([]byte(ir))
	}
	s.write("+ " + challenge + "\r\n")
	if s.writeErr != nil {
		return nil, &readError{s.writeErr}
	}
	line, err := readLine(s.r)
	if err != nil {
		return nil, &readError{err}
	}
	return decodeSASL(line)
}

// decodeSASL decodes one client response: "*" cancels, "=" is an empty
// response, anything else is base64 (padding optional).
func decodeSASL(line []byte) ([]byte, error) {
	switch string(line) {
	case "*":
		return nil, errCancelled
	case "=":
		return []byte{}, nil
	}
	enc := base64.StdEncoding
	if len(line)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	out := make([]byte, enc.DecodedLen(len(line)))
	n, err := enc.Decode(out, line)
	if err != nil {
		return nil, errBadBase64
	}
	return out[:n], nil
}

// decodePLAIN splits a PLAIN message, authzid NUL authcid NUL passwd (RFC
// 4616 §2). An authorization identity is accepted only when it equals the
// login.
func decodePLAIN(msg []byte) (login, password string, err error) {
	authzid, rest, ok := bytes.Cut(msg, []byte{0})
	if !ok {
		return "", "", errMalformed
	}
	authcid, passwd, ok := bytes.Cut(rest, []byte{0})
	if !ok || len(authcid) == 0 || bytes.IndexByte(passwd, 0) >= 0 {
		return "", "", errMalformed
	}
	if len(authzid) > 0 && !bytes.Equal(authzid, authcid) {
		return string(authcid), "", errAuthzid
	}
	return string(authcid), string(passwd), nil
}
