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

// FuzzUpstreamLogin is the fuzz target of a front's upstream login: login
// runs against an upstream that answers with the fuzzed bytes (seeds to
// start from) whatever it is sent, then has no more. The login must end with
// the upstream's bytes, never panic, return no connection with an error,
// never put the token in an error, and succeed only where the bytes hold
// success (the upstream's final OK).
func FuzzUpstreamLogin(f *testing.F, seeds []string, success string, login UpstreamLogin) {
	for _, seed := range seeds {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if loginEnds(t, data, login) && !strings.Contains(string(data), success) {
			t.Fatalf("logged in without %q from the upstream: %q", success, data)
		}
	})
}

// loginEnds runs login against an upstream that writes data and no more,
// checks what every upstream login promises, closes a logged-in connection
// and reports whether the login succeeded.
func loginEnds(t *testing.T, data []byte, login UpstreamLogin) bool {
	t.Helper()
	client := PeerWrites(data) // the upstream, saying no more after data
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
