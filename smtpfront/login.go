package smtpfront

import (
	"bytes"
	"errors"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// maxLoginField bounds a decoded user name or password of AUTH LOGIN and
// AUTH PLAIN; longer ones are refused before any check.
const maxLoginField = 1024

// The two challenges of the LOGIN mechanism (draft-murchison-sasl-login-00
// §2.2), base64 "VXNlcm5hbWU6" and "UGFzc3dvcmQ6" on the wire.
var (
	loginUserPrompt = []byte("Username:")
	loginPassPrompt = []byte("Password:")
)

// loginState is where a LOGIN exchange stands.
type loginState int

const (
	loginStart    loginState = iota // nothing received yet
	loginWantUser                   // "Username:" sent
	loginWantPass                   // user name received, "Password:" sent
	loginDone                       // password received; no further step
)

// loginServer is a go-sasl Server for the LOGIN mechanism (go-sasl has only
// the client): user name (as initial response or after "Username:"), then
// password after "Password:", then one call to authenticate. It takes at
// most three steps; every error it returns is a *smtp.SMTPError. A "*"
// cancellation is handled by go-smtp before Next is called.
type loginServer struct {
	state        loginState
	user         string
	authenticate func(user, password string) error
}

// newLoginServer returns a LOGIN server calling authenticate once with the
// user name and password; authenticate's error is returned unchanged and must
// be a *smtp.SMTPError.
func newLoginServer(authenticate func(user, password string) error) sasl.Server {
	return &loginServer{authenticate: authenticate}
}

// Next implements sasl.Server. response is nil only for a missing initial
// response.
func (s *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch s.state {
	case loginStart:
		if response == nil {
			s.state = loginWantUser
			return loginUserPrompt, false, nil
		}
		fallthrough
	case loginWantUser:
		if !validLoginField(response) {
			s.state = loginDone
			return nil, true, replyBadAuthData
		}
		s.user = string(response)
		s.state = loginWantPass
		return loginPassPrompt, false, nil
	case loginWantPass:
		s.state = loginDone
		if !validLoginField(response) {
			return nil, true, replyBadAuthData
		}
		return nil, true, s.authenticate(s.user, string(response))
	default:
		return nil, true, replyBadAuthData
	}
}

// validLoginField reports whether b is an acceptable user name or password:
// bounded, and free of NUL, CR and LF (which no login or password holds and
// which would only end up in logs).
func validLoginField(b []byte) bool {
	return len(b) <= maxLoginField && !bytes.ContainsAny(b, "\x00\r\n")
}

// newPlainServer returns go-sasl's PLAIN server (RFC 4616) calling
// authenticate with the authorization identity (often empty), the
// authentication identity and the password, each bounded by maxLoginField.
func newPlainServer(authenticate func(authz, user, password string) error) sasl.Server {
	return typedServer{sasl.NewPlainServer(func(authz, user, password string) error {
		if len(authz) > maxLoginField || len(user) > maxLoginField || len(password) > maxLoginField {
			return replyBadAuthData
		}
		return authenticate(authz, user, password)
	})}
}

// typedServer makes every error of a sasl.Server a *smtp.SMTPError: go-sasl
// returns plain errors for malformed input, which go-smtp would send to the
// client as raw Go error text.
type typedServer struct{ sasl.Server }

func (t typedServer) Next(response []byte) ([]byte, bool, error) {
	challenge, done, err := t.Server.Next(response)
	if err != nil {
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			se = replyBadAuthData
		}
		return nil, true, se
	}
	return challenge, done, nil
}
