// Package console is xoauthd's browser console, served by the admin
// endpoint at / when admin.password_hash is set: the screen of the vendor
// guides, with a list of accounts, a Connect button that signs an identity
// in through the admin's own browser, and a Test button that runs the
// mailbox test step by step.
//
// It is a second face of the command line's operations, never a second
// implementation: the token state is tokens.Identities (xoauthd accounts),
// Connect is tokens.AuthCodeLogin and tokens.DeviceLogin (xoauthd login),
// Sign out is the store's Delete (xoauthd logout), and Test is package
// check (xoauthd check).
//
// Security: the password is an argon2id hash in the configuration and is
// required on loopback too (terminal servers share it); failed sign-ins are
// throttled by proxy.Credentials like local mail logins. The session cookie
// is HttpOnly, SameSite=Strict and Secure over TLS; every state-changing
// request is a POST carrying the session's CSRF token. The provider's
// redirect back to the console comes from another site and so carries no
// SameSite=Strict cookie: it is bound to its login by the state parameter,
// a random secret that a signed-in session created. Pages are rendered with
// html/template; no token, client secret or password hash ever reaches a
// page, a URL or a log line. Nothing is loaded from elsewhere.
//
// Pages work without JavaScript; a small embedded script only updates the
// test and device sign-in pages live (without it they refresh themselves).
package console
