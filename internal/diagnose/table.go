package diagnose

import (
	"fmt"
	"strings"
)

// rule is one row of the table of replies: which replies it matches and
// what it says about them.
type rule struct {
	id       string
	proto    Protocol
	enhanced EnhancedCode // SMTP: the enhanced code; zero matches any
	code     int          // SMTP: the reply code; 0 matches any
	status   string       // IMAP/POP3: the status; "" matches any
	respCode string       // IMAP/POP3: the response code; "" matches any
	// phrase must occur in the reply text (case-insensitively). Only the
	// phrases Microsoft documents for replies that carry no distinguishing
	// code are used: the 5.7.139 variants and Exchange's IMAP/POP3 texts.
	phrase string
	kind   Kind
	cause  func(a Account) string
	fix    func(a Account) string
}

// matches reports whether r is a reply this rule explains.
func (ru *rule) matches(r *Reply) bool {
	switch {
	case ru.proto != r.Protocol,
		!ru.enhanced.IsZero() && ru.enhanced != r.Enhanced,
		ru.code != 0 && ru.code != r.Code,
		ru.status != "" && ru.status != r.Status,
		ru.respCode != "" && ru.respCode != r.RespCode:
		return false
	}
	return ru.phrase == "" || strings.Contains(strings.ToLower(r.Text), strings.ToLower(ru.phrase))
}

// Texts shared by several rules.
const (
	allowPropagation = "allow 15–60 minutes"
	enableSMTPTenant = "`Set-TransportConfig -SmtpClientAuthenticationDisabled $false`"
)

func enableSMTPMailbox(a Account) string {
	return fmt.Sprintf("`Set-CASMailbox %s -SmtpClientAuthenticationDisabled $false`", a.identity())
}

func fullAccess(a Account) string {
	return fmt.Sprintf("`Add-MailboxPermission -Identity %s -User %s -AccessRights FullAccess`", a.mailbox(), a.identity())
}

func congestionCause(a Account) string {
	return "the server takes no more mail from " + a.identity() + " for now (congestion, or a daily sending limit reached)"
}

func congestionFix(a Account) string {
	return "xoauthd backs off and answers 451, so clients send again later; a daily limit (Gmail: 5.4.5) lifts within 24 hours. " +
		"Send less from " + a.identity() + ", or spread it over more accounts."
}

// constant returns a text that names nobody.
func constant(s string) func(Account) string { return func(Account) string { return s } }

// rules is the table of replies, first match wins: rules with a phrase come
// before the rule for the same code without one. It is never modified.
var rules = []rule{
	// SMTP AUTH switched off: one enhanced code, told apart by Microsoft's
	// documented phrases.
	{id: "smtp-auth-disabled-tenant", proto: SMTP, code: 535, enhanced: EnhancedCode{5, 7, 139}, phrase: "disabled for the Tenant", kind: KindAdmin,
		cause: constant("SMTP AUTH is disabled for this tenant"),
		fix: func(a Account) string {
			return "An admin enables it with " + enableSMTPTenant + ", or per mailbox with " + enableSMTPMailbox(a) + "; " + allowPropagation + "."
		}},
	{id: "smtp-auth-disabled-mailbox", proto: SMTP, code: 535, enhanced: EnhancedCode{5, 7, 139}, phrase: "disabled for the Mailbox", kind: KindAdmin,
		cause: func(a Account) string { return "SMTP AUTH is disabled for the mailbox " + a.identity() },
		fix: func(a Account) string {
			return "An admin enables it with " + enableSMTPMailbox(a) + " (the mailbox setting overrides the tenant's), " +
				"or in the Microsoft 365 admin center under Users > Active users > " + a.identity() +
				" > Mail > Manage email apps > Authenticated SMTP; " + allowPropagation + "."
		}},
	{id: "smtp-auth-security-defaults", proto: SMTP, code: 535, enhanced: EnhancedCode{5, 7, 139}, phrase: "security defaults", kind: KindAdmin,
		cause: constant("the tenant's security defaults switch SMTP AUTH off"),
		fix: func(a Account) string {
			return "An admin turns security defaults off (Microsoft Entra admin center > Identity > Overview > Properties > " +
				"Manage security defaults), protects sign-ins with Conditional Access policies instead, and enables SMTP AUTH with " +
				enableSMTPMailbox(a) + "; " + allowPropagation + "."
		}},
	{id: "smtp-auth-policy", proto: SMTP, code: 535, enhanced: EnhancedCode{5, 7, 139}, phrase: "did not meet the criteria", kind: KindAdmin,
		cause: func(a Account) string {
			return "an authentication or Conditional Access policy blocked the SMTP sign-in of " + a.identity()
		},
		fix: func(a Account) string {
			return "An admin finds the failed sign-in of " + a.identity() + " in the Microsoft Entra sign-in logs and allows " +
				"(or excludes) this app in the policy that blocked it. xoauthd always signs in with XOAUTH2, never with a password."
		}},
	{id: "smtp-basic-auth", proto: SMTP, code: 535, enhanced: EnhancedCode{5, 7, 139}, phrase: "basic authentication is disabled", kind: KindBug,
		cause: constant("Microsoft received a password login instead of an OAuth token"),
		fix: constant("xoauthd sends only XOAUTH2 upstream, so a mail client is probably talking to Microsoft directly: " +
			"point it at xoauthd's local listener. If it does use xoauthd, please report this as a bug.")},
	{id: "smtp-auth-blocked", proto: SMTP, code: 535, enhanced: EnhancedCode{5, 7, 139}, kind: KindAdmin,
		cause: func(a Account) string {
			return "Microsoft refused SMTP AUTH for " + a.identity() + " because of a tenant or mailbox policy"
		},
		fix: func(a Account) string {
			return "An admin checks that SMTP AUTH is enabled (" + enableSMTPTenant + ", " + enableSMTPMailbox(a) +
				"), that security defaults are off and that no Conditional Access policy blocks the sign-in; " + allowPropagation + "."
		}},
	{id: "smtp-token-refused", proto: SMTP, code: 535, enhanced: EnhancedCode{5, 7, 3}, kind: KindAdmin,
		cause: func(a Account) string { return "Exchange refused the token of " + a.identity() + " for SMTP" },
		fix: func(a Account) string {
			return "Check that the app registration has the Office 365 Exchange Online permission SMTP.Send " +
				"(SMTP.SendAsApp for client credentials) and that the scopes use https://outlook.office.com/, then run " +
				"`xoauthd login " + a.identity() + "` to consent again. For client credentials an admin registers the app " +
				"in Exchange with `New-ServicePrincipal` and the Enterprise Application's Object ID. The mailbox " + a.identity() +
				" needs an Exchange Online licence. New permissions take up to an hour to reach Exchange."
		}},
	{id: "smtp-not-authenticated", proto: SMTP, enhanced: EnhancedCode{5, 7, 57}, kind: KindBug,
		cause: constant("the server refused mail from a session that is not authenticated"),
		fix: constant("xoauthd authenticates before it sends MAIL FROM, so the login failed earlier: look for the error " +
			"before this one. If there is none, please report this as a bug.")},
	{id: "smtp-send-as-denied", proto: SMTP, enhanced: EnhancedCode{5, 7, 60}, kind: KindAdmin,
		cause: sendAsCause(""),
		fix:   sendAsFix},
	{id: "smtp-send-as-denied-data", proto: SMTP, enhanced: EnhancedCode{5, 2, 252}, kind: KindAdmin,
		cause: sendAsCause(", the address in the message's From header"),
		fix:   sendAsFix},
	{id: "smtp-concurrency", proto: SMTP, enhanced: EnhancedCode{4, 3, 2}, kind: KindTemporary,
		cause: func(a Account) string {
			return "more than 3 simultaneous SMTP sessions for " + a.identity() + ", the most Exchange allows"
		},
		fix: func(a Account) string {
			return "Keep max_upstream_per_identity of the smtp server at 3 or less (the default) and check that no other " +
				"program sends as " + a.identity() + " at the same time. The message can be sent again in a moment."
		}},
	{id: "smtp-submission-limit", proto: SMTP, enhanced: EnhancedCode{5, 2, 0}, kind: KindTemporary,
		cause: func(a Account) string {
			return "the account " + a.identity() + " exceeded Exchange's sending limits of 30 messages a minute and 10,000 recipients a day"
		},
		fix: func(a Account) string {
			return "Send fewer messages or recipients from " + a.identity() + " (xoauthd backs off and answers 451, so clients " +
				"retry later); the daily limit counts the last 24 hours. Bulk mail belongs on a service made for it."
		}},
	// Exchange's message rate limit (MessageRateLimit of a throttling
	// policy or receive connector) refuses with this documented text.
	{id: "smtp-message-rate", proto: SMTP, enhanced: EnhancedCode{4, 4, 2}, phrase: "submission rate", kind: KindTemporary,
		cause: func(a Account) string {
			return "the account " + a.identity() + " sent more messages per minute than the server's message rate limit allows"
		},
		fix: func(a Account) string {
			return "Lower send_rate for " + a.identity() + " (xoauthd then spaces the messages), or ask the mail admin for a " +
				"higher MessageRateLimit. The message can be sent again in a minute."
		}},
	// RFC 3463 X.4.5, "system congestion": Gmail's reply when an account
	// reached its daily sending limit (550 5.4.5), and a server's "too much
	// for now" (4.4.5).
	{id: "smtp-congestion", proto: SMTP, enhanced: EnhancedCode{5, 4, 5}, kind: KindTemporary,
		cause: congestionCause, fix: congestionFix},
	{id: "smtp-congestion", proto: SMTP, enhanced: EnhancedCode{4, 4, 5}, kind: KindTemporary,
		cause: congestionCause, fix: congestionFix},
	{id: "smtp-mailbox-full", proto: SMTP, enhanced: EnhancedCode{5, 2, 2}, kind: KindAdmin,
		cause: func(a Account) string {
			return "the mailbox " + a.identity() + " is full; Exchange keeps a copy of every message sent over SMTP in Sent Items"
		},
		fix: func(a Account) string {
			return "Free space in the mailbox of " + a.identity() + ", or have an admin apply a retention policy that " +
				"removes old items from Sent Items."
		}},
	{id: "smtp-token-expires-soon", proto: SMTP, enhanced: EnhancedCode{5, 5, 127}, kind: KindTemporary,
		cause: constant("the access token had too little life left for this server"),
		fix: constant("Try again: xoauthd refreshes tokens that have less than 10 minutes left. If it keeps happening, " +
			"please report it.")},
	{id: "smtp-auth-failed", proto: SMTP, enhanced: EnhancedCode{5, 7, 8}, kind: KindLogin,
		cause: func(a Account) string { return "the server refused the access token of " + a.identity() },
		fix: func(a Account) string {
			return "Run `xoauthd login " + a.identity() + "` to get a new token, and check that the provider's scopes " +
				"include its mail scope (Gmail: https://mail.google.com/)."
		}},

	// IMAP and POP3. Exchange sends no response codes, so its documented
	// texts are matched; the RFC 5530 / RFC 2449 codes of other servers are
	// matched as codes.
	{id: "imap-not-connected", proto: IMAP, phrase: "User is authenticated but not connected", kind: KindAdmin,
		cause: func(a Account) string {
			if a.shared() {
				return "the login worked, but Exchange cannot open the mailbox " + a.mailbox() + " for " + a.identity()
			}
			return "the login worked, but Exchange cannot open the mailbox " + a.mailbox()
		},
		fix: notConnectedFix},
	{id: "imap-token-refused", proto: IMAP, status: "NO", phrase: "AUTHENTICATE failed", kind: KindAdmin,
		cause: refusedCause("IMAP"), fix: refusedFix("IMAP", "-ImapEnabled", "IMAP.AccessAsUser.All")},
	{id: "imap-token-refused", proto: IMAP, status: "NO", respCode: "AUTHENTICATIONFAILED", kind: KindAdmin,
		cause: refusedCause("IMAP"), fix: refusedFix("IMAP", "-ImapEnabled", "IMAP.AccessAsUser.All")},
	{id: "imap-token-expired", proto: IMAP, status: "BYE", phrase: "AccessTokenExpired", kind: KindTemporary,
		cause: constant("the IMAP session outlived its access token"),
		fix: constant("Nothing to fix: the mail client reconnects and xoauthd logs in with a fresh token " +
			"(it starts sessions with tokens that have most of their life left).")},
	{id: "imap-throttled", proto: IMAP, status: "NO", phrase: "Request is throttled", kind: KindTemporary,
		cause: func(a Account) string { return "Exchange is throttling requests for " + a.mailbox() },
		fix: func(a Account) string {
			return "Wait as long as the reply suggests, and lower the number of simultaneous connections to " + a.mailbox() +
				" (max_upstream_per_identity of the imap server; Exchange allows about 20)."
		}},
	{id: "imap-unavailable", proto: IMAP, respCode: "UNAVAILABLE", kind: KindTemporary,
		cause: constant("the IMAP server's login service is unavailable"),
		fix:   constant("Nothing to fix here: xoauthd and the mail client try again later. If it lasts, check the provider's service status.")},
	{id: "pop3-token-refused", proto: POP3, status: "-ERR", phrase: "Authentication failure", kind: KindAdmin,
		cause: refusedCause("POP3"), fix: refusedFix("POP", "-PopEnabled", "POP.AccessAsUser.All")},
	{id: "pop3-token-refused", proto: POP3, status: "-ERR", respCode: "AUTH", kind: KindAdmin,
		cause: refusedCause("POP3"), fix: refusedFix("POP", "-PopEnabled", "POP.AccessAsUser.All")},
	{id: "pop3-in-use", proto: POP3, status: "-ERR", respCode: "IN-USE", kind: KindTemporary,
		cause: func(a Account) string { return "another POP3 session holds the mailbox " + a.mailbox() },
		fix:   constant("Wait until the other session ends (only one POP3 session per mailbox at a time), then try again.")},
	{id: "pop3-unavailable", proto: POP3, status: "-ERR", respCode: "SYS/TEMP", kind: KindTemporary,
		cause: constant("the POP3 server has a temporary problem"),
		fix:   constant("Nothing to fix here: try again later. If it lasts, check the provider's service status.")},
}

func sendAsCause(where string) func(Account) string {
	return func(a Account) string {
		return "the account " + a.identity() + " may not send as " + a.sender() + where
	}
}

func sendAsFix(a Account) string {
	return fmt.Sprintf("An admin grants Send As with `Add-RecipientPermission %s -AccessRights SendAs -Trustee %s` "+
		"(or Send on Behalf), or the mail client sends with the address %s; allow up to an hour.", a.sender(), a.identity(), a.identity())
}

func refusedCause(proto string) func(Account) string {
	return func(a Account) string {
		if a.shared() {
			return "the " + proto + " server refused the token of " + a.identity() + " for the mailbox " + a.mailbox()
		}
		return "the " + proto + " server refused the token of " + a.identity()
	}
}

// refusedFix lists what makes Exchange refuse an IMAP or POP3 token, most
// common first.
func refusedFix(proto, enableFlag, permission string) func(Account) string {
	return func(a Account) string {
		var b strings.Builder
		fmt.Fprintf(&b, "Check, in this order: %s is enabled for %s (`Set-CASMailbox %s %s $true`, or in the Microsoft 365 "+
			"admin center under Manage email apps); the app registration has %s of Office 365 Exchange Online (not "+
			"Microsoft Graph) and `xoauthd login %s` was run after it was added",
			proto, a.mailbox(), a.mailbox(), enableFlag, permission, a.identity())
		if a.shared() {
			fmt.Fprintf(&b, "; %s has FullAccess on %s (%s)", a.identity(), a.mailbox(), fullAccess(a))
		}
		fmt.Fprintf(&b, "; with client credentials, the app is registered in Exchange (`New-ServicePrincipal`) and "+
			"its service principal has FullAccess on %s. Allow up to an hour for changes.", a.mailbox())
		return b.String()
	}
}

func notConnectedFix(a Account) string {
	if a.shared() {
		return fmt.Sprintf("Give %s FullAccess on %s with %s and allow up to an hour. Also check that %s exists and "+
			"that IMAP is enabled for it (`Set-CASMailbox %s -ImapEnabled $true`).",
			a.identity(), a.mailbox(), fullAccess(a), a.mailbox(), a.mailbox())
	}
	return fmt.Sprintf("Check that %s exists, has an Exchange Online licence and IMAP enabled (`Set-CASMailbox %s "+
		"-ImapEnabled $true`), and that the account's mailbox is spelled as in Exchange. With client credentials the "+
		"service principal needs FullAccess: `Add-MailboxPermission -Identity %s -User <service principal id> "+
		"-AccessRights FullAccess`.", a.mailbox(), a.mailbox(), a.mailbox())
}
