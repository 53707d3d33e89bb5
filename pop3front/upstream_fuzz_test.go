package pop3front

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/proxy"
)

// fuzzToken is the access token of the upstream fuzz target; it must never
// appear in an error.
const fuzzToken = "eyJ0eXAiOiJKV1QifQ.fuzz-token-value.sig"

// FuzzUpstreamLogin plays a POP3 upstream that answers the two-line AUTH
// XOAUTH2 with arbitrary bytes and then closes. The login must end, never
// panic, never put the token in an error, and succeed only after +OK.
func FuzzUpstreamLogin(f *testing.F) {
	for _, seed := range []string{
		"+OK POP3 ready\r\n+ \r\n+OK Logged in.\r\n",
		"+OK POP3 ready\r\n+ eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJtYWlsIn0=\r\n-ERR [AUTH] Authentication failed.\r\n",
		"+OK ready\r\n+\r\n-ERR [SYS/TEMP] try later\r\n",
		"+OK ready\r\n-ERR unknown command\r\n",
		"-ERR go away\r\n",
		"* OK IMAP here\r\n",
		"+OK ready\r\n+ \r\n+OK Logged in.\r\n+OK extra data after login\r\n",
		"",
		strings.Repeat("+", 5000),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		client := testkit.PeerWrites(data) // the upstream, hanging up after data
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		acct := proxy.Account{Login: "erp", Identity: "billing@contoso.test"}
		up, err := loginUpstream(ctx, client, &proxy.Dialer{Mode: proxy.TLSImplicit}, acct, fuzzToken)
		if ctx.Err() != nil {
			t.Fatalf("the login did not end with the upstream's bytes: %v", err)
		}
		if err != nil {
			if up != nil {
				t.Fatal("an error with an upstream")
			}
			if strings.Contains(err.Error(), fuzzToken) {
				t.Fatalf("the error holds the token: %v", err)
			}
			return
		}
		defer up.conn.Close()
		if !strings.Contains(string(data), "+OK") {
			t.Fatalf("logged in without +OK from the upstream: %q", data)
		}
	})
}
