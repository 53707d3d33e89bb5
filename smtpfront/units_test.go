package smtpfront

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func TestExplainUpstream(t *testing.T) {
	tests := []struct {
		reply   *smtp.SMTPError
		meaning string // substring; "" means unknown
	}{
		{&smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 139}, Message: "Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information."}, "disabled for the tenant or the mailbox"},
		{&smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 139}, Message: "Authentication unsuccessful, user is locked by your organization's security defaults policy. Contact your administrator."}, "security defaults"},
		{&smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 139}, Message: "Authentication unsuccessful, the request did not meet the criteria to be authenticated successfully."}, "Conditional Access"},
		{&smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 139}, Message: "Authentication unsuccessful, basic authentication is disabled."}, "password instead of a token"},
		{&smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 3}, Message: "Authentication unsuccessful [SN2PR00CA0018.namprd00.prod.outlook.com]"}, "refused the token"},
		{&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 60}, Message: "SMTP; Client does not have permissions to send as this sender"}, "envelope sender"},
		{&smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 2, 252}, Message: "SendAsDenied; a not allowed to send as b"}, "From address"},
		{&smtp.SMTPError{Code: 432, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Concurrent connections limit exceeded"}, "concurrent SMTP sessions"},
		{&smtp.SMTPError{Code: 432, Message: "Concurrent connections limit exceeded"}, "concurrent SMTP sessions"},
		{&smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 2, 0}, Message: "STOREDRV.Submission.Exception:SubmissionQuotaExceededException"}, "sending limit"},
		{&smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 2, 2}, Message: "mailbox full; QuotaExceeded"}, "mailbox is full"},
		{&smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 127}, Message: "Invalid XOAUTH2 auth data - Token will expire soon"}, "about to expire"},
		{&smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 57}, Message: "Client not authenticated to send mail"}, "MAIL before"},
		{&smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 2, 0}, Message: "other"}, ""},
		{&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "unknown user"}, ""},
		{nil, ""},
	}
	for _, tt := range tests {
		name := "nil"
		if tt.reply != nil {
			name = tt.reply.Message
		}
		t.Run(name, func(t *testing.T) {
			c, ok := explainUpstream(tt.reply)
			if ok != (tt.meaning != "") || !strings.Contains(c.Meaning, tt.meaning) {
				t.Fatalf("explainUpstream = %+v, %v; want meaning with %q", c, ok, tt.meaning)
			}
			if ok && c.Fix == "" {
				t.Fatal("a known cause without a fix")
			}
		})
	}
}

func TestSlots(t *testing.T) {
	s := newSlots(2)
	ctx := t.Context()
	r1, err := s.acquire(ctx, "a", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.acquire(ctx, "a", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Another identity is not affected.
	rb, err := s.acquire(ctx, "b", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.acquire(ctx, "a", 10*time.Millisecond); !errors.Is(err, errNoSlot) {
		t.Fatalf("third slot: %v, want errNoSlot", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.acquire(cctx, "a", time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
	// A waiter gets the slot given back.
	got := make(chan error)
	go func() {
		r, err := s.acquire(ctx, "a", time.Minute)
		if err == nil {
			r()
		}
		got <- err
	}()
	r1()
	r1() // a second call does nothing
	if err := <-got; err != nil {
		t.Fatalf("waiter: %v", err)
	}
	r2()
	rb()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) != 0 {
		t.Fatalf("%d identities left in the map after every release", len(s.m))
	}
}

func TestExtCacheProfile(t *testing.T) {
	const local = 35 << 20
	c := newExtCache()
	if p := c.profile(local); p != (ehloProfile{size: local}) {
		t.Fatalf("fresh profile %+v, want the local size without SMTPUTF8", p)
	}
	c.learn("exchange:587", upstreamExt{size: 157286400, smtputf8: true})
	if p := c.profile(local); p != (ehloProfile{size: local, smtputf8: true}) {
		t.Fatalf("profile %+v, want local size (smaller) and SMTPUTF8", p)
	}
	c.learn("gmail:587", upstreamExt{size: 35882577, smtputf8: true})
	c.learn("exchange:587", upstreamExt{size: 20 << 20, smtputf8: true})
	if p := c.profile(local); p != (ehloProfile{size: 20 << 20, smtputf8: true}) {
		t.Fatalf("profile %+v, want the smallest size", p)
	}
	c.learn("old:587", upstreamExt{})
	if p := c.profile(local); p.smtputf8 || p.size != 20<<20 {
		t.Fatalf("profile %+v, want no SMTPUTF8 once one upstream lacks it", p)
	}
	for i := range 2 * maxKnownUpstreams {
		c.learn(strings.Repeat("x", i), upstreamExt{size: 1})
	}
	if len(c.known) > maxKnownUpstreams {
		t.Fatalf("%d upstreams remembered, bound is %d", len(c.known), maxKnownUpstreams)
	}
	for _, tt := range []struct {
		in   string
		want int64
	}{{"", 0}, {"37748736", 37748736}, {"-1", 0}, {"x", 0}} {
		if got := parseSize(tt.in); got != tt.want {
			t.Errorf("parseSize(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}
