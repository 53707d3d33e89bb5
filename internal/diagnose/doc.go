// Package diagnose explains why a mail login or submission failed, in plain
// words with the fix, naming the account's mailbox: the cause-and-fix table
// behind "xoauthd check" and the log lines of the fronts.
//
// Explain accepts any error and looks, with errors.As, for
//   - an upstream's error reply: a *Reply (ParseSMTP, ParseIMAP, ParsePOP3),
//     go-smtp's *smtp.SMTPError or go-imap's *imap.Error;
//   - a classified token error of package tokens (NeedsLoginError,
//     ConfigError, TemporaryError, IdentityMismatchError), whose Microsoft
//     Entra AADSTS explanations come from the tokens package's table; they
//     are found by their methods, so diagnose does not import tokens and
//     the fronts that parse replies with it stay free of the configuration
//     and OAuth libraries;
//   - a TLS failure (untrusted, expired or misnamed certificate, a server that
//     does not speak TLS) or a dial failure (refused, unknown host, timeout,
//     connection closed).
//
// SMTP replies are matched by their enhanced status code (RFC 3463, RFC 2034)
// and IMAP/POP3 replies by their status and response code (RFC 5530,
// RFC 2449, RFC 3206). Exchange Online gives several different causes the
// same enhanced code (5.7.139) and sends IMAP/POP3 failures without response
// codes, so for those the table also compares the reply text with the
// phrases Microsoft documents; nothing else is matched by text.
//
// Sources of the table: Microsoft's pages on authenticated SMTP submission
// (SMTP AUTH, 5.7.139), SMTP submission limits (4.3.2, 5.2.0, 5.2.2), OAuth
// for IMAP, POP and SMTP (shared mailboxes, client credentials) and the
// Entra ID error code reference.
//
// Not covered: delivery status notifications (bounces arrive as messages,
// not replies) and replies to commands after DATA other than the final one.
package diagnose
