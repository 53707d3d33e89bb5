package smtpfront

import (
	"bytes"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/proxy"
)

// loginCall records what the LOGIN server handed to its authenticator.
type loginCall struct {
	calls      int
	user, pass string
}

func (l *loginCall) auth(user, pass string) error {
	l.calls++
	l.user, l.pass = user, pass
	if user == testLogin && pass == testPassword {
		return nil
	}
	return replyAuthInvalid
}

func TestLoginServer(t *testing.T) {
	long := bytes.Repeat([]byte("x"), maxLoginField+1)
	tests := []struct {
		name       string
		responses  [][]byte // nil first: no initial response
		challenges []string // expected after each response while not done
		wantErr    *smtp.SMTPError
		wantCall   bool
	}{
		{"no initial response", [][]byte{nil, []byte(testLogin), []byte(testPassword)}, []string{"Username:", "Password:"}, nil, true},
		{"user as initial response", [][]byte{[]byte(testLogin), []byte(testPassword)}, []string{"Password:"}, nil, true},
		{"wrong password", [][]byte{nil, []byte(testLogin), []byte("nope")}, []string{"Username:", "Password:"}, replyAuthInvalid, true},
		{"empty user from '='", [][]byte{{}, []byte(testPassword)}, []string{"Password:"}, replyAuthInvalid, true},
		{"empty password", [][]byte{nil, []byte(testLogin), {}}, []string{"Username:", "Password:"}, replyAuthInvalid, true},
		{"user too long", [][]byte{nil, long}, []string{"Username:"}, replyBadAuthData, false},
		{"password too long", [][]byte{[]byte(testLogin), long}, []string{"Password:"}, replyBadAuthData, false},
		{"NUL in user", [][]byte{[]byte("a\x00b")}, nil, replyBadAuthData, false},
		{"CRLF in password", [][]byte{[]byte(testLogin), []byte("a\r\nb")}, []string{"Password:"}, replyBadAuthData, false},
		{"longest user allowed", [][]byte{long[:maxLoginField], []byte(testPassword)}, []string{"Password:"}, replyAuthInvalid, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var lc loginCall
			s := newLoginServer(lc.auth)
			var err error
			done := false
			for i, r := range tt.responses {
				if done {
					t.Fatalf("step %d after done", i)
				}
				var ch []byte
				ch, done, err = s.Next(r)
				if !done {
					if i >= len(tt.challenges) || string(ch) != tt.challenges[i] {
						t.Fatalf("step %d challenge %q, want %q", i, ch, tt.challenges)
					}
				}
			}
			if !done {
				t.Fatal("exchange not finished")
			}
			if err != tt.wantErr && !(err == nil && tt.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if (lc.calls == 1) != tt.wantCall || lc.calls > 1 {
				t.Fatalf("authenticator called %d times, want call %v", lc.calls, tt.wantCall)
			}
			if tt.wantCall && lc.user != string(tt.responses[len(tt.responses)-2]) {
				t.Fatalf("user %q", lc.user)
			}
			// Nothing more is accepted after the end.
			if _, done, err := s.Next([]byte("more")); !done || err != replyBadAuthData {
				t.Fatalf("Next after the end = %v, %v", done, err)
			}
		})
	}
}

func TestPlainServerErrorsAreTyped(t *testing.T) {
	tests := []struct {
		name string
		resp []byte
		want *smtp.SMTPError
	}{
		{"no separators", []byte("garbage"), replyBadAuthData},
		{"too many parts", []byte("a\x00b\x00c\x00d"), replyBadAuthData},
		{"password too long", []byte("\x00u\x00" + strings.Repeat("p", maxLoginField+1)), replyBadAuthData},
		{"authenticator's reply", []byte("\x00u\x00p"), replyAuthInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newPlainServer(func(string, string, string) error { return replyAuthInvalid })
			_, done, err := s.Next(tt.resp)
			if !done || err != tt.want {
				t.Fatalf("Next = %v, %v; want done with %v", done, err, tt.want)
			}
		})
	}
	// A second response after the end is refused with a typed error too.
	s := newPlainServer(func(string, string, string) error { return nil })
	s.Next([]byte("\x00u\x00p"))
	if _, _, err := s.Next([]byte("again")); err != replyBadAuthData {
		t.Fatalf("second Next err = %v", err)
	}
}

// FuzzLoginServer feeds the LOGIN server arbitrary responses: it must end
// within three steps, call the authenticator at most once with bounded
// values, send only its two prompts and return only typed errors. The input
// is split at '\n' into responses; a first part "<nil>" means no initial
// response.
func FuzzLoginServer(f *testing.F) {
	f.Add([]byte("<nil>\nerp-billing\ncorrect horse"))
	f.Add([]byte("erp-billing\ncorrect horse"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parts := bytes.Split(data, []byte("\n"))
		var lc loginCall
		s := newLoginServer(lc.auth)
		steps := 0
		for i, p := range parts {
			if i == 0 && string(p) == "<nil>" {
				p = nil
			}
			steps++
			ch, done, err := s.Next(p)
			if _, typed := err.(*smtp.SMTPError); err != nil && !typed {
				// go-smtp writes raw Go error text for anything else.
				t.Fatalf("untyped error %T %v", err, err)
			}
			if done {
				break
			}
			if string(ch) != "Username:" && string(ch) != "Password:" {
				t.Fatalf("unexpected challenge %q", ch)
			}
			if steps > 3 {
				t.Fatalf("not done after %d steps", steps)
			}
		}
		if lc.calls > 1 || len(lc.user) > maxLoginField || len(lc.pass) > maxLoginField {
			t.Fatalf("authenticator called %d times with %d/%d bytes", lc.calls, len(lc.user), len(lc.pass))
		}
	})
}

// BenchmarkLoginServer measures the pre-auth LOGIN exchange (without the
// credential check).
func BenchmarkLoginServer(b *testing.B) {
	user, pass := []byte(testLogin), []byte(testPassword)
	auth := func(string, string) error { return nil }
	b.ReportAllocs()
	for b.Loop() {
		s := newLoginServer(auth)
		s.Next(nil)
		s.Next(user)
		if _, done, err := s.Next(pass); !done || err != nil {
			b.Fatal(done, err)
		}
	}
}

// replyAuthInvalid stands for the reply of a failed login in the SASL
// server tests (the front's reply comes from failureReply).
var replyAuthInvalid = failureReply(proxy.Classify(proxy.ErrBadCredentials))
