package xoauth2

import (
	"encoding/base64"
	"errors"
	"testing"
)

func TestEncode(t *testing.T) {
	got := Encode("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg")
	// The example from Google's XOAUTH2 protocol description.
	want := "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
	if got != want {
		t.Fatalf("Encode = %s, want %s", got, want)
	}
}

func TestDecodeChallenge(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Challenge
		retry   bool
		wantErr bool
	}{
		{"dovecot", "eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJtYWlsIn0=", Challenge{"401", "bearer", "mail"}, true, false},
		{"google", base64.StdEncoding.EncodeToString([]byte(`{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}`)), Challenge{"400", "Bearer", "https://mail.google.com/"}, true, false},
		{"forbidden", base64.StdEncoding.EncodeToString([]byte(`{"status":"403"}`)), Challenge{Status: "403"}, false, false},
		{"not base64", "!!!", Challenge{}, false, true},
		{"not json", base64.StdEncoding.EncodeToString([]byte("nope")), Challenge{}, false, true},
		{"too long", base64.StdEncoding.EncodeToString(make([]byte, maxChallenge+1)), Challenge{}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeChallenge(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want || got.Retry() != tt.retry {
				t.Fatalf("got %+v (retry %v), want %+v (retry %v)", got, got.Retry(), tt.want, tt.retry)
			}
		})
	}
}

func TestClientAnswersChallengeWithEmptyResponse(t *testing.T) {
	c := NewClient("a@example.com", "tok")
	mech, ir, err := c.Start()
	if err != nil || mech != Mechanism || string(ir) != "user=a@example.com\x01auth=Bearer tok\x01\x01" {
		t.Fatalf("Start = %q %q %v", mech, ir, err)
	}
	resp, err := c.Next([]byte(`{"status":"401","schemes":"bearer","scope":"mail"}`))
	if err != nil || resp == nil || len(resp) != 0 {
		t.Fatalf("Next = %q, %v; want empty non-nil response", resp, err)
	}
	_, err = c.Next(nil)
	var xe *Error
	if !errors.As(err, &xe) || xe.Challenge.Status != "401" {
		t.Fatalf("second Next err = %v, want *Error with status 401", err)
	}
}

func TestContinuationClientSendsResponseAfterEmptyChallenge(t *testing.T) {
	c := NewContinuationClient("a@example.com", "tok")
	mech, ir, err := c.Start()
	if err != nil || mech != Mechanism || ir != nil {
		t.Fatalf("Start = %q %q %v; want no initial response", mech, ir, err)
	}
	resp, err := c.Next(nil)
	if err != nil || string(resp) != "user=a@example.com\x01auth=Bearer tok\x01\x01" {
		t.Fatalf("first Next = %q, %v", resp, err)
	}
	resp, err = c.Next([]byte(`{"status":"401"}`))
	if err != nil || resp == nil || len(resp) != 0 {
		t.Fatalf("Next after the error challenge = %q, %v; want an empty response", resp, err)
	}
	var xe *Error
	if _, err := c.Next(nil); !errors.As(err, &xe) {
		t.Fatalf("third Next err = %v, want *Error", err)
	}
}

func FuzzDecodeChallenge(f *testing.F) {
	f.Add("eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJtYWlsIn0=")
	f.Add("")
	f.Add("e30=")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := DecodeChallenge(s)
		if err != nil && c != (Challenge{}) {
			t.Fatalf("error with non-zero challenge %+v", c)
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	tok := string(make([]byte, 1500))
	b.ReportAllocs()
	for b.Loop() {
		_ = Encode("billing@contoso.com", tok)
	}
}
