package smtpfront

import (
	"strings"

	"github.com/emersion/go-smtp"
)

// upstreamCause explains an upstream SMTP reply for the log: what it means
// and what to do. The client sees the upstream's reply unchanged.
type upstreamCause struct {
	Meaning string
	Fix     string
}

// causeRule matches an upstream reply by its enhanced code and, where
// Exchange uses one code for several causes, by a phrase of its text
// (lower case). Rules are tried in order; the first match wins.
type causeRule struct {
	enhanced smtp.EnhancedCode
	phrase   string // "" matches any text
	cause    upstreamCause
}

// causeRules is the table of Exchange Online (and Gmail) SMTP submission
// replies that need an administrator, after Microsoft's documentation of
// SMTP AUTH, its sending limits and shared mailboxes. It is self-contained
// so it can move to a shared table of causes and fixes.
var causeRules = []causeRule{
	{smtp.EnhancedCode{5, 7, 139}, "security defaults", upstreamCause{
		"security defaults of the tenant block SMTP AUTH",
		"an administrator must turn off security defaults in Entra ID and use Conditional Access policies instead"}},
	{smtp.EnhancedCode{5, 7, 139}, "did not meet the criteria", upstreamCause{
		"an authentication or Conditional Access policy blocked the sign-in",
		"check the Entra ID sign-in logs for this identity and allow the app (or exclude it from the policy)"}},
	{smtp.EnhancedCode{5, 7, 139}, "basic authentication is disabled", upstreamCause{
		"a password instead of a token reached Microsoft",
		"xoauthd only sends XOAUTH2 upstream: check that the client talks to xoauthd, not to Microsoft directly"}},
	{smtp.EnhancedCode{5, 7, 139}, "", upstreamCause{
		"SMTP AUTH is disabled for the tenant or the mailbox",
		"an administrator runs Set-CASMailbox <mailbox> -SmtpClientAuthenticationDisabled $false (or Set-TransportConfig -SmtpClientAuthenticationDisabled $false for the tenant, or Microsoft 365 admin center > user > Mail > Manage email apps > Authenticated SMTP); it takes effect within about an hour"}},
	{smtp.EnhancedCode{5, 7, 3}, "", upstreamCause{
		"Exchange refused the token although the identity provider issued it",
		"log in again so the token carries the Outlook SMTP.Send scope; the SMTP user is the token's own identity (send as a shared mailbox with MAIL FROM and Send As); for app-only access redo New-ServicePrincipal with the right object id and mailbox permissions; new permissions take up to an hour"}},
	{smtp.EnhancedCode{5, 7, 57}, "", upstreamCause{
		"the upstream saw MAIL before a successful AUTH",
		"this is a bug in xoauthd: please report it with this log line"}},
	{smtp.EnhancedCode{5, 7, 60}, "", upstreamCause{
		"the identity may not send as this envelope sender",
		"grant Send As (Add-RecipientPermission <sender> -Trustee <identity> -AccessRights SendAs) or send from the identity's own address"}},
	{smtp.EnhancedCode{5, 2, 252}, "", upstreamCause{
		"the identity may not send as the message's From address",
		"grant Send As (Add-RecipientPermission <from> -Trustee <identity> -AccessRights SendAs) or use the identity's own address in From"}},
	{smtp.EnhancedCode{4, 3, 2}, "", upstreamCause{
		"more concurrent SMTP sessions for this mailbox than Exchange allows (3)",
		"lower max_upstream_per_identity to 3 or less, or spread sending over more identities"}},
	{smtp.EnhancedCode{5, 2, 0}, "storedrv.submission", upstreamCause{
		"a sending limit was hit (30 messages a minute, 10,000 recipients a day)",
		"send less often or move bulk mail to a service made for it"}},
	{smtp.EnhancedCode{5, 2, 2}, "", upstreamCause{
		"the sender's mailbox is full (submitted mail is saved in Sent Items)",
		"free space in the mailbox or add a retention policy on Sent Items"}},
	{smtp.EnhancedCode{5, 5, 127}, "", upstreamCause{
		"the token was about to expire when it was sent",
		"this should not happen with a fresh token: check the clock of this machine"}},
}

// explainUpstream returns the cause and fix of an upstream reply, if the
// table knows it. A reply without an enhanced code is matched by its basic
// code for the one case Exchange sends that way ("432 4.3.2" is also seen
// as plain 432).
func explainUpstream(e *smtp.SMTPError) (upstreamCause, bool) {
	if e == nil {
		return upstreamCause{}, false
	}
	code := e.EnhancedCode
	if code == smtp.EnhancedCodeNotSet && e.Code == 432 {
		code = smtp.EnhancedCode{4, 3, 2}
	}
	text := strings.ToLower(e.Message)
	for _, r := range causeRules {
		if r.enhanced == code && strings.Contains(text, r.phrase) {
			return r.cause, true
		}
	}
	return upstreamCause{}, false
}
