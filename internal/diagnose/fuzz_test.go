package diagnose

import (
	"strings"
	"testing"
	"unicode"
)

// checkParsed asserts what every parsed reply guarantees, and that the
// table explains it without panicking.
func checkParsed(t *testing.T, r *Reply) {
	t.Helper()
	for _, s := range []string{r.Line, r.Text} {
		if strings.IndexFunc(s, unicode.IsControl) >= 0 {
			t.Errorf("control character in %q", s)
		}
	}
	if len(r.Line) > maxShown+3 || len(r.Text) > maxReplyBytes+3 {
		t.Errorf("unbounded: line %d, text %d bytes", len(r.Line), len(r.Text))
	}
	e, ok := Explain(r, Account{Identity: "alice@contoso.com", Mailbox: "shared@contoso.com"})
	if e.Cause == "" || e.Fix == "" || (ok != (e.Kind != KindUnknown)) {
		t.Errorf("explanation %#v, ok %v", e, ok)
	}
}

func FuzzParseSMTP(f *testing.F) {
	for _, l := range exchangeSMTP {
		f.Add(l.line)
	}
	f.Add("250-smtp.example\r\n250-PIPELINING\r\n250 AUTH XOAUTH2\r\n")
	f.Add("535-5.7.8 a\r\n535 5.7.8 b\r\n")
	f.Add("5\xff5 5.7.3 x")
	f.Fuzz(func(t *testing.T, in string) {
		r, err := ParseSMTP(in)
		if err != nil {
			return
		}
		if r.Code < 200 || r.Code > 599 {
			t.Errorf("code %d", r.Code)
		}
		checkParsed(t, r)
	})
}

func FuzzParseIMAP(f *testing.F) {
	for _, l := range exchangeIMAPPOP {
		if l.proto == IMAP {
			f.Add(l.line)
		}
	}
	f.Add("A1 NO [AUTHENTICATIONFAILED] Authentication failed.")
	f.Add("* OK [CAPABILITY IMAP4rev1] ready")
	f.Add("A1 NO [")
	f.Fuzz(func(t *testing.T, in string) {
		r, err := ParseIMAP(in)
		if err != nil {
			return
		}
		checkParsed(t, r)
	})
}

func FuzzParsePOP3(f *testing.F) {
	for _, l := range exchangeIMAPPOP {
		if l.proto == POP3 {
			f.Add(l.line)
		}
	}
	f.Add("-ERR [SYS/TEMP] later")
	f.Add("+OK 3 4096")
	f.Fuzz(func(t *testing.T, in string) {
		r, err := ParsePOP3(in)
		if err != nil {
			return
		}
		checkParsed(t, r)
	})
}
