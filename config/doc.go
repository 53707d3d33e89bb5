// Package config owns xoauthd's YAML configuration: the schema (types.go),
// strict decoding that reports every problem with its YAML path and line,
// ${env:NAME} and ${file:PATH} references for secrets, defaults and provider
// presets, and validation.
//
// Parse and Load decode with yaml.v3 through yaml.Node, so an unknown or
// duplicate key, a wrong type, a missing environment variable or file, and
// every validation problem come back together as Problems, each rendered
// like
//
//	accounts[2].provider (line 41): unknown provider "m356"; known: m365
//
// Messages never contain the value of a Secret (client_secret,
// password_hash, store.key, notify.webhook); a Secret prints as "***"
// through fmt, slog, JSON and YAML.
//
// References are resolved only in secret fields, and only when the whole
// value is one reference. A relative ${file:PATH}, like store.path, ca_file
// and tls.cert/tls.key, is relative to the configuration file's directory.
// The file named by store.key may be missing: Store.KeyFile records it and
// the token store creates it (mode 0600).
//
// Defaults: log level info, format text; store.path tokens.json beside the
// configuration file, store.key ${file:store.key} beside the configuration
// file too (apart from a store kept elsewhere; the old default beside the
// store is still read when found there, with a warning, see Warnings);
// tokens.keepalive 24h (0: off); notify.timeout 10s (notify.go);
// provider flow authcode; microsoft tenant organizations and the
// login.microsoftonline.com endpoints, Exchange Online delegated scopes
// (app-only .default for client_credentials) and upstreams; google's
// endpoints, https://mail.google.com/ and Gmail's upstreams; per server
// max_connections 1000, idle_timeout 31m (smtp 5m), preauth_timeout 60s (at most
// 10m), max_upstream_per_identity 3 for smtp and 20 otherwise, upstream_tls
// by port (587 and 25 starttls, others implicit); an account's mailbox is its
// identity, and its provider the only one when exactly one is configured.
//
// DefaultPath gives the file the command line uses without --config.
//
// Watch (watch.go) follows the file through editors' rename-over saves and
// Kubernetes ConfigMap symlink swaps by watching directories with fsnotify,
// debounces, and hands each reloaded Config (or its Problems) to a callback;
// a Config is immutable once Parse returns it, so the caller publishes it as
// a new snapshot.
package config
