package daemon

import (
	"net/netip"
	"strings"

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

// newPacer returns the one Pacer of every SMTP listener, reporting to the
// metrics: an identity's sending limit holds across listeners.
func (d *Daemon) newPacer() *smtpfront.Pacer {
	return smtpfront.NewPacer(smtpfront.PacerOptions{OnDelay: d.ops.metrics.SendDelayed, OnRefuse: d.ops.metrics.SendRefused})
}

// sendRateFunc returns the smtpfront.SendRateFunc of one SMTP listener:
// the account's send_rate, else the server's, else the provider's default,
// from the live snapshot (see noAuthFunc for start and key).
func (d *Daemon) sendRateFunc(start config.Server, key string) smtpfront.SendRateFunc {
	return func(acct proxy.Account) smtpfront.Rate {
		s := d.snap.Load()
		srv := &start
		if cur, ok := s.servers[key]; ok {
			srv = cur
		}
		r := s.cfg.SendRateFor(srv, s.byLogin[strings.ToLower(acct.Login)])
		return smtpfront.Rate{Messages: r.Messages, Per: r.Per}
	}
}
