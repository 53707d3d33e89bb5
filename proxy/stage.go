package proxy

import "errors"

// Stages of an upstream login, as a LoginFunc names them in a StageError.
const (
	StageGreeting = "greeting"            // reading the server's greeting (and EHLO for SMTP)
	StageStartTLS = "STARTTLS"            // STARTTLS or STLS and the TLS handshake
	StageLogin    = "XOAUTH2 login"       // AUTHENTICATE / AUTH XOAUTH2
	StageMailbox  = "opening the mailbox" // IMAP: the probe after the login
)

// StageError is an upstream login error with the stage at which it
// happened, so that a report such as "xoauthd check"'s can say which step
// of the login failed. Its text is the wrapped error's: wrapping changes no
// log line, and errors.Is and errors.As see through it.
type StageError struct {
	Stage string // one of the Stage constants
	Err   error
}

func (e *StageError) Error() string { return e.Err.Error() }
func (e *StageError) Unwrap() error { return e.Err }

// AtStage wraps err with stage; nil stays nil, and an error that already
// names a stage keeps it.
func AtStage(stage string, err error) error {
	if err == nil || StageOf(err) != "" {
		return err
	}
	return &StageError{Stage: stage, Err: err}
}

// StageOf returns the login stage named in err's chain, "" when none is.
func StageOf(err error) string {
	var se *StageError
	if errors.As(err, &se) {
		return se.Stage
	}
	return ""
}
