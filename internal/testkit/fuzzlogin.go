package testkit

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// FuzzToken is the access token a fuzzed upstream login sends; it must
// never appear in an error.
const FuzzToken = "eyJ0eXAiOiJKV1QifQ.fuzz-token-value.sig"

// UpstreamLogin logs in over conn with FuzzToken. It returns the logged-in
// connection (nil on error) and the error.
type UpstreamLogin func(ctx context.Context, conn net.Conn) (net.Conn, error)

// FuzzLoginEnds runs login against an upstream that answers with data
// whatever it is sent and then hangs up, and fails t unless the login
// keeps what every upstream login promises: it ends with the upstream's
// bytes, an error comes without a connection, and no error holds the
// token. It closes a logged-in connection and reports whether the login
// succeeded, so that the caller can check that data allowed it.
func FuzzLoginEnds(t *testing.T, data []byte, login UpstreamLogin) bool {
	t.Helper()
	client := PeerWrites(data) // the upstream, hanging up after data
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	up, err := login(ctx, client)
	if ctx.Err() != nil {
		t.Fatalf("the login did not end with the upstream's bytes: %v", err)
	}
	if err != nil {
		if up != nil {
			t.Fatal("an error with an upstream")
		}
		if strings.Contains(err.Error(), FuzzToken) {
			t.Fatalf("the error holds the token: %v", err)
		}
		return false
	}
	_ = up.Close()
	return true
}
