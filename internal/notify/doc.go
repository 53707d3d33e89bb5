// Package notify tells an administrator, once, that an identity needs a
// person: a new interactive login (the refresh token was revoked or expired,
// consent was withdrawn, MFA is now required) or a fix of the app
// registration (an expired client secret, a missing permission).
//
// A Notifier keeps the open alerts, one per identity and cause. The first
// report of a cause logs one line at ERROR with the cause, the fix and the
// command that fixes it, calls the OnAlert seam (metrics) and, when hooks
// are configured, delivers the alert in the background: a command run
// without a shell (the alert as JSON on stdin and in XOAUTHD_* variables,
// with a small allow-listed environment so that the daemon's secrets stay
// behind) and a JSON POST to a webhook (https, or http to loopback; no
// redirects; retried a couple of times with back-off on network errors,
// 408, 429 and 5xx). Each run and request is bounded by a timeout, at most
// a few deliveries run at once and a bounded number wait; a delivery never
// blocks the caller. Later reports of the same cause are silent until the
// caller clears the alert (the identity works again), after which a new
// failure alerts again.
//
// Alerts carry words (cause, fix, command), never a token or a secret, and
// the webhook URL is never logged (hook URLs often carry a token): logs
// name its host only.
package notify
