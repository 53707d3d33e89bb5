package smtpfront

import (
	"fmt"

	"github.com/emersion/go-smtp"
)

// Replies the front itself gives the client. They are typed, so go-smtp
// writes exactly these codes and texts (an untyped error would reach the
// client as raw Go error text). The texts never say whether a login exists
// or why an upstream failed: the log line does.
var (
	// RFC 4954 §4: a SASL response that is not what the mechanism expects.
	replyBadAuthData = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Invalid authentication data"}
	// RFC 4954 §6: MAIL before AUTH.
	replyAuthRequired  = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	replyAlreadyAuthed = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Already authenticated"}
	// The upstream broke off: the message was not accepted (never a 250).
	replyUpstreamLost = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Upstream connection lost, message not accepted; try again later"}
	// A new upstream session could not be opened for the next message.
	replyUpstreamUnavailable = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 1}, Message: "Upstream server unavailable, try again later"}
	// Redials failed maxRedialFailures times in a row: the session ends.
	replyUpstreamUnavailableClosing = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 1}, Message: "Upstream server unavailable, closing connection; try again later"}
	// The client's message data broke off before its end.
	replyDataAborted = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Message data ended early, message not accepted"}
	// A DATA line over maxLineLength.
	replyLineTooLong = &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Line too long"}
	// RFC 6531 §3.4 with an upstream that does not offer SMTPUTF8.
	replyNoSMTPUTF8   = &smtp.SMTPError{Code: 555, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: "SMTPUTF8 is not supported by the upstream server"}
	replyShuttingDown = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Service shutting down, try again later"}
	replyInternal     = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Internal error, try again later"}
	replyBusy         = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Too many connections, try again later"}
	replyAuthLimit    = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many failed authentication attempts, closing connection"}
	// A reload removed the account or changed its password: the session
	// ends at its next command (a message being relayed is finished first).
	replyAccountChanged = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Account changed, closing connection"}
)

// replyLine formats e as one reply line with its CRLF, for the rare replies
// the front writes itself (refusal, hang-up) rather than through go-smtp.
func replyLine(e *smtp.SMTPError) string {
	return fmt.Sprintf("%d %d.%d.%d %s\r\n", e.Code, e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2], e.Message)
}
