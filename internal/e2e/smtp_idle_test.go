package e2e

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/xoauthd/xoauthd/internal/testline"
)

// TestSMTPIdleTimeoutFromConfig: idle_timeout on an SMTP server ends a
// silent logged-in session after that time with 421 4.4.2 (RFC 5321
// section 4.5.3.2.7), not after the front's built-in 5 minutes.
func TestSMTPIdleTimeoutFromConfig(t *testing.T) {
	t.Parallel()
	r := newRigWith(t, rigOptions{serverYAML: "idle_timeout: 1s"})
	c := testline.Dial(t, r.smtp)
	c.Until("220 ")
	c.Send("EHLO client.test")
	c.Until("250 ")
	c.Send("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+aliceLogin+"\x00"+alicePass)))
	c.Until("235 ")
	// Silent now: the server must speak first, long before 5 minutes.
	if rest := c.Rest(); !strings.HasPrefix(rest, "421 4.4.2 ") {
		t.Fatalf("a silent session got %q, want 421 4.4.2 and the end", rest)
	}
}
