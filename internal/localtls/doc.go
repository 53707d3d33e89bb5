// Package localtls provides the certificates of xoauthd's own listeners, the
// TLS that local mail clients see (STARTTLS, STLS or implicit TLS), as a
// *tls.Config whose GetCertificate reads a certificate holder:
//
//   - Load takes a PEM certificate chain and key from two files. The files
//     are looked at again, at most every few seconds, when a client starts a
//     handshake: a renewed certificate (certbot, cert-manager, a Kubernetes
//     Secret swapped under the same paths) is served from the next handshake
//     on, without a restart or SIGHUP. A replacement that does not load (a
//     half-written file, a key that does not match) is logged once and the
//     previous certificate stays in use.
//   - SelfSigned makes a self-signed certificate for one host name or IP
//     address (ECDSA P-256, valid for one year) on first start, keeps it in
//     a directory (beside the token store) and reuses it afterwards; a new
//     one is made when the kept one expires within 30 days or no longer
//     names the host. Its SHA-256 fingerprint is logged, so that a user can
//     check what a mail client shows before trusting it.
//
// The configuration is TLS 1.2 or later with Go's default cipher suites. A
// client certificate is neither asked for nor checked: local clients log in
// with a password.
package localtls
