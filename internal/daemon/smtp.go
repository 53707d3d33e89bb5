package daemon

import (
	"net/netip"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/proxy"
	"github.com/xoauthd/xoauthd/smtpfront"
)

// noAuthFunc returns the smtpfront.NoAuthFunc of one SMTP listener: its
// no_auth: in the live snapshot (falling back to the settings it started
// with when a reload removed it), mapped to the named account.
func (d *Daemon) noAuthFunc(start config.Server, key string) smtpfront.NoAuthFunc {
	return func(remote netip.Addr) (proxy.Account, string, bool) {
		s := d.snap.Load()
		srv := start
		if cur, ok := s.servers[key]; ok {
			srv = *cur
		}
		rule, ok := srv.NoAuth.Admits(remote)
		if !ok {
			return proxy.Account{}, "", false
		}
		acct, _, ok := d.lookupLogin(srv.NoAuth.Account)
		return acct, rule, ok
	}
}
