package proxy

import (
	"encoding/base64"
	"io"
	"strings"
	"testing"

	"github.com/xoauthd/xoauthd/internal/xoauth2"
)

func TestRedactUpstreamText(t *testing.T) {
	const token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL291dGxvb2sub2ZmaWNlLmNvbSJ9.c2lnbmF0dXJlLWJ5dGVz"
	blob := xoauth2.Encode("billing@contoso.com", token)
	oauthbearer := base64.StdEncoding.EncodeToString([]byte("n,a=billing@contoso.com,\x01host=x\x01auth=Bearer " + token + "\x01\x01"))
	tests := []struct {
		name, in, want string
	}{
		{"echoed imap command", "a NO AUTHENTICATE XOAUTH2 " + blob + " failed", "a NO AUTHENTICATE XOAUTH2 *** failed"},
		{"echoed smtp command", "500 5.5.2 unrecognized command AUTH XOAUTH2 " + blob, "500 5.5.2 unrecognized command AUTH XOAUTH2 ***"},
		{"blob cut off by a quote bound", "-ERR you said " + blob[:120] + "...", "-ERR you said ***..."},
		{"oauthbearer", "535 " + oauthbearer, "535 ***"},
		{"bare jwt", "NO token " + token + " expired", "NO token *** expired"},
		{"bearer word", "NO Authorization: Bearer ya29.a0AfH6SMBx rejected", "NO Authorization: Bearer *** rejected"},
		{"auth=bearer in clear", "BAD user=x\x01auth=Bearer ya29.abc\x01", "BAD user=x\x01auth=Bearer ***\x01"},
		{"exchange failure unchanged", "535 5.7.139 Authentication unsuccessful, the user credentials were incorrect. [AM0PR10CA0012.EURPRD10.PROD.OUTLOOK.COM 2024-01-01T00:00:00.000Z 08DC2B3F4A5E6D7C]",
			"535 5.7.139 Authentication unsuccessful, the user credentials were incorrect. [AM0PR10CA0012.EURPRD10.PROD.OUTLOOK.COM 2024-01-01T00:00:00.000Z 08DC2B3F4A5E6D7C]"},
		{"gmail queue id unchanged", "250 2.0.0 OK  1700000000 a640c23a62f3a-a9a1234567bsm123456766b.12 - gsmtp", "250 2.0.0 OK  1700000000 a640c23a62f3a-a9a1234567bsm123456766b.12 - gsmtp"},
		{"dovecot queue id unchanged", "250 2.0.0 <billing@contoso.com> 7Uq1Aq0aVWXpEQAAoEHyzg Saved", "250 2.0.0 <billing@contoso.com> 7Uq1Aq0aVWXpEQAAoEHyzg Saved"},
		{"schemes bearer unchanged", `{"status":"401","schemes":"bearer","scope":"mail"}`, `{"status":"401","schemes":"bearer","scope":"mail"}`},
		{"blob at the end of a sentence", "NO you sent " + blob + ".", "NO you sent ***."},
		{"hosts and dots unchanged", "* OK outlook.office365.com ready...", "* OK outlook.office365.com ready..."},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RedactUpstreamText(tt.in); got != tt.want {
				t.Errorf("RedactUpstreamText(%q)\n = %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

// FuzzRedactUpstreamText: a credential put anywhere into any text never
// survives redaction, and the function never panics.
func FuzzRedactUpstreamText(f *testing.F) {
	f.Add("a NO ", " failed", "T0K3N")
	f.Add("", "", "eyJhbGciOi")
	f.Add("535 5.7.3 ", "\r\n", "x")
	f.Fuzz(func(t *testing.T, head, tail, token string) {
		if strings.ContainsAny(token, "\x00\x01") {
			return
		}
		blob := xoauth2.Encode("user@example.com", token)
		out := RedactUpstreamText(head + " " + blob + " " + tail)
		if strings.Contains(out, blob) {
			t.Fatalf("blob survived: %q", out)
		}
	})
}

// TestTraceRedactsEchoedResponse: an upstream reply that echoes the XOAUTH2
// response shows "***" in the protocol trace, whatever the front's
// redactor let through.
func TestTraceRedactsEchoedResponse(t *testing.T) {
	logs := new(logBuffer)
	traced, other := tracedPipe(t, TracePeerUpstream, logs)
	blob := xoauth2.Encode("billing@contoso.com", "ya29.secret-token")
	go io.WriteString(other, "a NO unknown: a AUTHENTICATE XOAUTH2 "+blob+"\r\n")
	readN(t, traced, len("a NO unknown: a AUTHENTICATE XOAUTH2 "+blob+"\r\n"))
	recs := traceRecords(t, logs)
	if len(recs) != 1 || recs[0].line != "R:a NO unknown: a AUTHENTICATE XOAUTH2 ***" {
		t.Fatalf("trace = %+v, want the response as ***", recs)
	}
}
