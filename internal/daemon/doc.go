// Package daemon wires a configuration snapshot into a running xoauthd: the
// token manager over the encrypted store, the local credential check, one
// proxy.Server per configured listener with its protocol front, and the
// gateway that maps each login to its upstream. `xoauthd serve` and
// `xoauthd demo` both run a Daemon, so the demo exercises the same code paths.
//
// Reload (reload.go) publishes a new snapshot atomically: the next login
// sees the new accounts, providers and upstreams; sessions go on except
// those of an account that was removed or whose password_hash changed
// (proxy.Sessions closes them); listeners are started and stopped to match
// the servers, and a stopped listener's sessions run to their end. Watch
// (fsnotify, debounced) and ReloadFile (SIGHUP) feed it; a file that does
// not load is logged problem by problem and changes nothing.
package daemon
