package daemon

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/imapfront"
	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/pop3front"
	"github.com/xoauthd/xoauthd/proxy"
	"github.com/xoauthd/xoauthd/smtpfront"
)

// TestRefuseImplicitTLSWritesNothing: a connection over the limit of an
// implicit-TLS listener is closed without a plaintext reply, by every
// front (a client expecting a TLS handshake cannot read a "too busy" line).
func TestRefuseImplicitTLSWritesNothing(t *testing.T) {
	fronts := map[string]proxy.Handler{
		"imap": imapfront.New(imapfront.Options{TLS: &tls.Config{}, ImplicitTLS: true}),
		"pop3": pop3front.New(pop3front.Options{TLS: &tls.Config{}, ImplicitTLS: true}),
		"smtp": smtpfront.New(smtpfront.Options{TLS: &tls.Config{}, ImplicitTLS: true}),
	}
	for name, front := range fronts {
		t.Run(name, func(t *testing.T) {
			addr := testkit.ServeOne(t, front.Refuse)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(c)
			if err != nil || len(got) != 0 {
				t.Fatalf("refused connection got %q, %v; want nothing", got, err)
			}
		})
	}
}
