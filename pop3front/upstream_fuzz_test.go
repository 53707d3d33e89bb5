package pop3front

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/proxy"
)

// FuzzUpstreamLogin plays a POP3 upstream that answers the two-line AUTH
// XOAUTH2 with arbitrary bytes and then closes. The login must end, never
// panic, never put the token in an error, and succeed only after +OK.
func FuzzUpstreamLogin(f *testing.F) {
	seeds := []string{
		"+OK POP3 ready\r\n+ \r\n+OK Logged in.\r\n",
		"+OK POP3 ready\r\n+ eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJtYWlsIn0=\r\n-ERR [AUTH] Authentication failed.\r\n",
		"+OK ready\r\n+\r\n-ERR [SYS/TEMP] try later\r\n",
		"+OK ready\r\n-ERR unknown command\r\n",
		"-ERR go away\r\n",
		"* OK IMAP here\r\n",
		"+OK ready\r\n+ \r\n+OK Logged in.\r\n+OK extra data after login\r\n",
		"",
		strings.Repeat("+", 5000),
	}
	acct := proxy.Account{Login: "erp", Identity: "billing@contoso.test"}
	testkit.FuzzUpstreamLogin(f, seeds, "+OK", func(ctx context.Context, conn net.Conn) (net.Conn, error) {
		up, err := loginUpstream(ctx, conn, &proxy.Dialer{Mode: proxy.TLSImplicit}, acct, testkit.FuzzToken)
		if up == nil {
			return nil, err
		}
		return up.conn, err
	})
}
