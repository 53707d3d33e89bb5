package xoauth2

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzClient drives both clients through arbitrary server challenges (the
// input split at '\n'): the first response is always the initial response,
// the answer to the first challenge after it is always empty (an error
// challenge is answered with an empty line, never "="), the step after that
// is an *Error, and the token never travels in anything but the initial
// response.
func FuzzClient(f *testing.F) {
	f.Add([]byte(`{"status":"401","schemes":"bearer","scope":"mail"}`))
	f.Add([]byte("\n" + `{"status":"400"}` + "\nagain"))
	f.Add([]byte("not json\n\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		const user, token = "billing@contoso.com", "tok-3f9a.secret-part"
		want := InitialResponse(user, token)
		for _, c := range []struct {
			name string
			c    interface {
				Start() (string, []byte, error)
				Next([]byte) ([]byte, error)
			}
			ir bool
		}{{"NewClient", NewClient(user, token), true}, {"NewContinuationClient", NewContinuationClient(user, token), false}} {
			mech, ir, err := c.c.Start()
			if mech != Mechanism || err != nil {
				t.Fatalf("%s Start = %q, %v", c.name, mech, err)
			}
			challenges := bytes.Split(data, []byte("\n"))
			if !c.ir {
				if ir != nil {
					t.Fatalf("%s sent an initial response", c.name)
				}
				resp, err := c.c.Next(challenges[0])
				if err != nil || !bytes.Equal(resp, want) {
					t.Fatalf("%s first Next = %q, %v; want the initial response", c.name, resp, err)
				}
				challenges = challenges[1:]
			} else if !bytes.Equal(ir, want) {
				t.Fatalf("%s initial response = %q", c.name, ir)
			}
			for i, ch := range challenges {
				resp, err := c.c.Next(ch)
				switch i {
				case 0:
					if err != nil || resp == nil || len(resp) != 0 {
						t.Fatalf("%s answer to a challenge = %q, %v; want an empty response", c.name, resp, err)
					}
				default:
					var xe *Error
					if !errors.As(err, &xe) || resp != nil {
						t.Fatalf("%s step %d = %q, %v; want *Error", c.name, i, resp, err)
					}
					if bytes.Contains([]byte(err.Error()), []byte(token)) {
						t.Fatalf("%s error holds the token: %v", c.name, err)
					}
				}
			}
		}
	})
}

// FuzzParseChallenge checks that a decoded challenge of any bytes parses
// or fails cleanly, and that an error leaves the zero Challenge.
func FuzzParseChallenge(f *testing.F) {
	f.Add([]byte(`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`))
	f.Add([]byte(`{"status":401}`))
	f.Add([]byte(`[]`))
	f.Add(bytes.Repeat([]byte("{"), 10000))
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := ParseChallenge(raw)
		if err != nil && c != (Challenge{}) {
			t.Fatalf("error %v with challenge %+v", err, c)
		}
		if c.Retry() && c.Status != "400" && c.Status != "401" {
			t.Fatalf("Retry for status %q", c.Status)
		}
	})
}
