package diagnose

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/internal/xoauth2"
)

// Kind says who can fix a failure.
type Kind string

// The kinds of failure.
const (
	KindLogin     Kind = "login"     // the account's owner signs in again (xoauthd login)
	KindAdmin     Kind = "admin"     // a Microsoft 365 administrator changes a tenant or mailbox setting
	KindConfig    Kind = "config"    // xoauthd's configuration or the app registration must change
	KindTemporary Kind = "temporary" // goes away by itself; try again later
	KindNetwork   Kind = "network"   // the server cannot be reached or its certificate is not accepted
	KindBug       Kind = "bug"       // should not happen with xoauthd; report it
	KindUnknown   Kind = "unknown"   // xoauthd does not know this failure
)

// Account names the account a failure is about, so that fixes can name its
// mailbox. Every field may be empty.
type Account struct {
	Identity string // whose token: the signed-in user and the SMTP AUTH user
	Mailbox  string // the IMAP/POP3 user= (may be a shared mailbox); "" means Identity
	Sender   string // the MAIL FROM address, for Send As fixes; "" means Mailbox
}

func (a Account) identity() string {
	switch {
	case a.Identity != "":
		return a.Identity
	case a.Mailbox != "":
		return a.Mailbox
	}
	return "<mailbox>"
}

func (a Account) mailbox() string {
	if a.Mailbox != "" {
		return a.Mailbox
	}
	return a.identity()
}

func (a Account) sender() string {
	if a.Sender != "" {
		return a.Sender
	}
	return a.mailbox()
}

// shared reports whether the mailbox is not the identity's own.
func (a Account) shared() bool {
	return a.Identity != "" && a.Mailbox != "" && !strings.EqualFold(a.Identity, a.Mailbox)
}

// Explanation is the cause of a failure in plain words and its fix.
type Explanation struct {
	// Rule names the table entry that matched (e.g. "smtp-auth-disabled-tenant",
	// "token-needs-login", "tls-untrusted"); "" when nothing matched.
	Rule string `json:"rule,omitempty"`
	// Code identifies the failure as the server or provider named it:
	// "535 5.7.139", "IMAP NO AUTHENTICATE failed", "AADSTS700082"; may be "".
	Code string `json:"code,omitempty"`
	Kind Kind   `json:"kind"`
	// Cause says what went wrong, without a final period.
	Cause string `json:"cause"`
	// Fix says what to do, in whole sentences, with the account's
	// addresses filled in and commands in `backquotes`.
	Fix string `json:"fix"`
	// Raw is the server's reply or the error's text, cleaned of control
	// characters and bounded.
	Raw string `json:"raw,omitempty"`
}

// String returns "Cause (Code). Fix".
func (e Explanation) String() string { return e.Summary() + ". " + e.Fix }

// Summary returns the cause with a capital letter and the code in
// parentheses (left out when the cause already quotes it), without the fix.
func (e Explanation) Summary() string {
	s := capitalize(e.Cause)
	if e.Code != "" && !strings.Contains(e.Cause, e.Code) {
		s += " (" + e.Code + ")"
	}
	return s
}

// LogValue logs the explanation as a group of code, kind, cause and fix.
func (e Explanation) LogValue() slog.Value {
	attrs := make([]slog.Attr, 0, 4)
	if e.Code != "" {
		attrs = append(attrs, slog.String("code", e.Code))
	}
	return slog.GroupValue(append(attrs,
		slog.String("kind", string(e.Kind)), slog.String("cause", e.Cause), slog.String("fix", e.Fix))...)
}

// Explain explains err for the account a. It reports false when it does
// not recognise the failure; the Explanation then says so and repeats the
// reply or error text, so it can be shown either way. A nil err gives a
// zero Explanation and false.
func Explain(err error, a Account) (Explanation, bool) {
	if err == nil {
		return Explanation{}, false
	}
	if r := ReplyOf(err); r != nil {
		return explainReply(r, a)
	}
	if e, ok := explainToken(err, a); ok {
		return e, true
	}
	if e, ok := explainTLS(err); ok {
		return e, true
	}
	if e, ok := explainNet(err, a); ok {
		return e, true
	}
	return Explanation{
		Kind: KindUnknown, Raw: clean(err.Error(), maxShown),
		Cause: "a failure xoauthd has no explanation for: " + clean(err.Error(), maxShown),
		Fix:   "Read the error text for a hint; if it names a code, look it up in the provider's documentation.",
	}, false
}

// Why returns the cause and the fix of a failure for a log line: what
// Explain knows of it, or that it does not know the server reply in it. ok
// is false when err holds neither a known failure nor a reply (a wrong
// local password, throttling), so there is nothing to add to the error.
func Why(err error, a Account) (text string, ok bool) {
	e, known := Explain(err, a)
	if !known && ReplyOf(err) == nil {
		return "", false
	}
	return e.String(), true
}

// ReplyOf returns the server reply in err's chain, nil when there is none: a
// *Reply, or one made from go-smtp's *smtp.SMTPError or go-imap's *imap.Error.
func ReplyOf(err error) *Reply {
	var r *Reply
	if errors.As(err, &r) {
		return r
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return FromSMTPError(se.Code, se.EnhancedCode, se.Message)
	}
	var ie *imap.Error
	if errors.As(err, &ie) {
		line := string(ie.Type)
		if ie.Code != "" {
			line += " [" + string(ie.Code) + "]"
		}
		return &Reply{Protocol: IMAP, Status: strings.ToUpper(string(ie.Type)), RespCode: strings.ToUpper(string(ie.Code)),
			Text: clean(ie.Text, maxReplyBytes), Line: clean(line+" "+ie.Text, maxShown)}
	}
	return nil
}

func explainReply(r *Reply, a Account) (Explanation, bool) {
	for i := range rules {
		ru := &rules[i]
		if !ru.matches(r) {
			continue
		}
		code := r.codeString()
		if r.Protocol != SMTP {
			code = strings.ToUpper(string(r.Protocol)) + " " + code
			if ru.respCode == "" && ru.phrase != "" {
				code += " " + ru.phrase
			}
		}
		return Explanation{Rule: ru.id, Code: code, Kind: ru.kind, Cause: ru.cause(a), Fix: ru.fix(a), Raw: r.Line}, true
	}
	return Explanation{
		Code: r.codeString(), Kind: KindUnknown, Raw: r.Line,
		Cause: "the " + strings.ToUpper(string(r.Protocol)) + " server sent a reply xoauthd does not know: " + quote(r.Line),
		Fix:   "Look the reply up in the provider's documentation.",
	}, false
}

// The classified errors of package tokens, by the methods they have, so
// that diagnose (and the fronts that parse replies with it) does not depend
// on tokens, its configuration and its OAuth libraries.
type (
	needsLoginError interface {
		error
		NeedsLogin() (code, meaning, fix string)
	}
	configError interface {
		error
		ConfigurationProblem() (provider, code, meaning, fix string)
	}
	temporaryError interface {
		error
		TemporaryFailure() (code, meaning string, retryAt time.Time)
	}
	mismatchError interface {
		error
		AccountMismatch() (identity, signedIn string)
	}
)

// explainToken explains the classified errors of package tokens. The
// meanings of Microsoft's AADSTS codes come from that package's table.
func explainToken(err error, a Account) (Explanation, bool) {
	var (
		nl needsLoginError
		ce configError
		te temporaryError
		im mismatchError
	)
	raw := clean(err.Error(), maxShown)
	switch {
	case errors.As(err, &im):
		identity, signedIn := im.AccountMismatch()
		return Explanation{Rule: "token-wrong-account", Kind: KindLogin, Raw: raw,
			Cause: "the sign-in was done as " + signedIn + ", not as " + identity,
			Fix: "Run `xoauthd login " + identity + "` again and pick " + identity + " in the account chooser " +
				"(a private browser window avoids reusing the other session)."}, true
	case errors.As(err, &nl):
		code, meaning, fix := nl.NeedsLogin()
		if fix == "" {
			fix = "run `xoauthd login " + a.identity() + "`"
		}
		return Explanation{Rule: "token-needs-login", Code: code, Kind: KindLogin, Raw: raw,
			Cause: meaning, Fix: sentence(fix)}, true
	case errors.As(err, &ce):
		provider, code, cause, fix := ce.ConfigurationProblem()
		if provider != "" {
			cause = "provider " + provider + ": " + cause
		}
		return Explanation{Rule: "token-configuration", Code: code, Kind: KindConfig, Raw: raw,
			Cause: cause, Fix: sentence(fix)}, true
	case errors.As(err, &te):
		code, meaning, retryAt := te.TemporaryFailure()
		fix := "Nothing to fix: xoauthd tries again by itself"
		if !retryAt.IsZero() {
			fix += " after " + retryAt.Local().Format(time.TimeOnly)
		}
		fix += ". If it lasts, check that this machine reaches the identity provider (DNS, firewall, proxy)."
		return Explanation{Rule: "token-temporary", Code: code, Kind: KindTemporary, Raw: raw,
			Cause: meaning, Fix: fix}, true
	}
	return Explanation{}, false
}

// explainTLS explains a failed TLS handshake.
func explainTLS(err error) (Explanation, bool) {
	var (
		unknownCA x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		invalid   x509.CertificateInvalidError
		record    tls.RecordHeaderError
	)
	raw := clean(err.Error(), maxShown)
	e := Explanation{Kind: KindNetwork, Raw: raw}
	switch {
	case errors.As(err, &unknownCA):
		e.Rule, e.Cause = "tls-untrusted", "the server's TLS certificate is not signed by a trusted authority"
		e.Fix = "If the server uses a private CA, set ca_file on its server entry to that CA's PEM file. If it is a public " +
			"server such as outlook.office365.com, something between this machine and the server intercepts TLS " +
			"(a proxy or firewall): let it pass unchanged, or trust its CA with ca_file."
	case errors.As(err, &hostErr):
		e.Rule, e.Cause = "tls-wrong-name", "the server's TLS certificate is not valid for the name in upstream"
		e.Fix = "Set upstream to a host name the certificate names (for Microsoft 365: outlook.office365.com:993, " +
			"outlook.office365.com:995, smtp.office365.com:587), not an IP address or alias."
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		e.Rule, e.Cause = "tls-expired", "the server's TLS certificate has expired or is not valid yet"
		e.Fix = "Check this machine's clock first; if it is right, the server's certificate must be renewed."
	case errors.As(err, &invalid):
		e.Rule, e.Cause = "tls-invalid", "the server's TLS certificate was not accepted"
		e.Fix = "Check the certificate chain the server sends, and ca_file on its server entry."
	case errors.As(err, &record):
		e.Rule, e.Cause, e.Kind = "tls-not-tls", "the server did not answer with TLS", KindConfig
		e.Fix = "Set upstream_tls to match the port: implicit for 993, 995 and 465; starttls for 587, 143 and 110."
	default:
		return Explanation{}, false
	}
	return e, true
}

// explainNet explains dial and connection failures and a rejected XOAUTH2
// challenge without a final reply.
func explainNet(err error, a Account) (Explanation, bool) {
	var (
		dnsErr *net.DNSError
		netErr net.Error
		xe     *xoauth2.Error
	)
	raw := clean(err.Error(), maxShown)
	e := Explanation{Kind: KindNetwork, Raw: raw}
	switch {
	case errors.As(err, &xe):
		e.Rule, e.Kind, e.Code = "xoauth2-refused", KindLogin, "XOAUTH2 status "+clean(xe.Challenge.Status, 10)
		e.Cause = "the server refused the access token of " + a.identity()
		e.Fix = "Run `xoauthd login " + a.identity() + "` for a new token and check the provider's scopes."
	case isAny(err, errnoRefused):
		e.Rule, e.Cause = "connection-refused", "nothing accepts connections at the upstream address"
		e.Fix = "Check upstream (host and port) in the configuration, and that no firewall blocks outgoing connections to it."
	case errors.As(err, &dnsErr):
		e.Rule, e.Cause = "unknown-host", "the upstream's host name could not be resolved"
		e.Fix = "Check the spelling of upstream in the configuration and this machine's DNS settings."
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout():
		e.Rule, e.Cause = "timeout", "the server did not answer in time"
		e.Fix = "Check that a firewall or proxy lets this machine reach the upstream, and try again."
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), isAny(err, errnoReset), errors.Is(err, net.ErrClosed):
		e.Rule, e.Cause = "connection-closed", "the server closed the connection unexpectedly"
		e.Fix = "Try again; if it repeats, check that upstream and upstream_tls name the right service and mode."
	case isAny(err, errnoUnreachable):
		e.Rule, e.Cause = "unreachable", "there is no network route to the upstream"
		e.Fix = "Check this machine's network connection and routing."
	default:
		return Explanation{}, false
	}
	return e, true
}

// isAny reports whether err matches one of targets.
func isAny(err error, targets []error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// sentence makes s start with a capital letter and end with a period.
func sentence(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return s
	}
	s = capitalize(s)
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

// capitalize upper-cases the first letter of s, unless the first word is
// a name that must keep its case (an address, a command, xoauthd).
func capitalize(s string) string {
	first, _, _ := strings.Cut(s, " ")
	if first == "xoauthd" || strings.ContainsAny(first, "@./_`\"") {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 {
		return s
	}
	return string(unicode.ToUpper(r)) + s[n:]
}

// quote puts server text in double quotes (it is already cleaned).
func quote(s string) string { return `"` + s + `"` }
