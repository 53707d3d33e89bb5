package memupstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
)

// mechanism is the SASL mechanism the server offers.
const mechanism = "XOAUTH2"

// byeWriteTimeout bounds writing the BYE of FaultTokenExpired.
const byeWriteTimeout = 5 * time.Second

// xoauth2 server states.
const (
	stateStart    = iota // nothing received yet
	stateResponse        // sent the empty challenge, waiting for the response
	stateFailed          // sent the error challenge, waiting for the empty response
)

// xoauth2Server is a go-sasl Server for XOAUTH2 as Google and Dovecot speak
// it: a bad token gets a JSON error challenge, and the client's (empty)
// answer to it gets the final failure.
type xoauth2Server struct {
	sess  *session
	state int
}

// Next handles one client response.
func (x *xoauth2Server) Next(resp []byte) (challenge []byte, done bool, err error) {
	switch x.state {
	case stateStart:
		if resp == nil { // no initial response: send an empty challenge
			x.state = stateResponse
			return nil, false, nil
		}
		return x.login(resp)
	case stateResponse:
		return x.login(resp)
	default:
		if len(resp) != 0 {
			return nil, false, &imap.Error{Type: imap.StatusResponseTypeBad,
				Text: "Expected an empty response to the error challenge"}
		}
		return nil, false, &imap.Error{Type: imap.StatusResponseTypeNo,
			Code: imap.ResponseCodeAuthenticationFailed, Text: "AUTHENTICATE failed."}
	}
}

// login checks the initial response and applies the user's login faults.
func (x *xoauth2Server) login(resp []byte) ([]byte, bool, error) {
	user, token, err := parseResponse(resp)
	if err != nil {
		return nil, false, &imap.Error{Type: imap.StatusResponseTypeNo,
			Code: imap.ResponseCodeAuthenticationFailed, Text: "Invalid XOAUTH2 response: " + err.Error()}
	}
	srv := x.sess.srv
	switch srv.takeFault(user, FaultTokenExpired, FaultCloseOnLogin) {
	case FaultTokenExpired:
		// Written on the raw connection: imapserver holds its encoder while
		// a SASL step runs.
		nc := x.sess.conn.NetConn()
		_ = nc.SetWriteDeadline(time.Now().Add(byeWriteTimeout))
		_, _ = nc.Write([]byte("* BYE " + TokenExpiredText + "\r\n"))
		_ = nc.Close()
		return nil, false, errors.New("memupstream: token expired fault")
	case FaultCloseOnLogin:
		_ = x.sess.conn.NetConn().Close()
		return nil, false, errors.New("memupstream: close on login fault")
	}
	if err := srv.validate(user, token); err != nil {
		x.state = stateFailed
		return srv.errorChallenge(), false, nil
	}
	x.sess.loggedIn(user)
	return nil, true, nil
}

// validate runs Options.Validate.
func (s *Server) validate(user, token string) error {
	if s.opts.Validate == nil {
		if token == "" {
			return errors.New("empty token")
		}
		return nil
	}
	return s.opts.Validate(user, token)
}

// errorChallenge is the JSON the server sends for a rejected token.
func (s *Server) errorChallenge() []byte {
	scope := s.opts.Scope
	if scope == "" {
		scope = defaultScope
	}
	b, _ := json.Marshal(struct {
		Status  string `json:"status"`
		Schemes string `json:"schemes"`
		Scope   string `json:"scope"`
	}{"401", "bearer", scope}) // cannot fail: three strings
	return b
}

// parseResponse splits "user=U\x01auth=Bearer T\x01\x01" into U and T.
func parseResponse(resp []byte) (user, token string, err error) {
	body, ok := bytes.CutSuffix(resp, []byte("\x01\x01"))
	if !ok {
		return "", "", errors.New("missing final ^A^A")
	}
	var haveUser, haveAuth bool
	for _, kv := range strings.Split(string(body), "\x01") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return "", "", fmt.Errorf("field without '=': %q", k)
		}
		switch k {
		case "user":
			user, haveUser = v, true
		case "auth":
			scheme, tok, ok := strings.Cut(v, " ")
			if !ok || !strings.EqualFold(scheme, "Bearer") {
				return "", "", errors.New("auth is not a Bearer token")
			}
			token, haveAuth = tok, true
		}
	}
	if !haveUser || !haveAuth {
		return "", "", errors.New("user= or auth= missing")
	}
	return user, token, nil
}
