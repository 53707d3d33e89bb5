package imapfront

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/proxy"
)

// FuzzUpstreamLogin plays an IMAP upstream that answers the XOAUTH2 login
// with arbitrary bytes (greeting, continuations, untagged data, literals,
// tagged replies) and then closes. The login must end (the upstream's
// bytes are finite), never panic, never put the token in an error, and
// succeed only after a tagged OK.
func FuzzUpstreamLogin(f *testing.F) {
	seeds := []string{
		"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] ready\r\nt1 OK [CAPABILITY IMAP4rev1 IDLE] done\r\nxo1 OK LIST done\r\n",
		"* OK ready\r\n+ \r\nt1 OK done\r\nxo1 CAPABILITY\r\n* CAPABILITY IMAP4rev1\r\nxo1 OK\r\nxo2 OK\r\n",
		"* OK ready\r\n+ eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJtYWlsIn0=\r\nt1 NO [AUTHENTICATIONFAILED] failed\r\n",
		"* OK ready\r\nt1 OK done\r\nxo1 BAD User is authenticated but not connected.\r\n",
		"* PREAUTH hi\r\n",
		"* BYE go away\r\n",
		"* OK ready\r\n* 1 FETCH (BODY[] {99999999999}\r\n",
		"* OK ready\r\n* CAPABILITY {5}\r\nIMAP4\r\nt1 OK\r\n",
		"+OK POP3 here\r\n",
		"",
		strings.Repeat("* OK ", 5000),
	}
	acct := proxy.Account{Login: "erp", Identity: "billing@contoso.test", Mailbox: "billing@contoso.test"}
	testkit.FuzzUpstreamLogin(f, seeds, "t1 OK", func(ctx context.Context, conn net.Conn) (net.Conn, error) {
		up, err := loginUpstream("t1", slog.New(slog.DiscardHandler))(ctx, conn, nil, acct, testkit.FuzzToken)
		if up == nil {
			return nil, err
		}
		return up.conn, err
	})
}
