package pop3front

import (
	"encoding/base64"
	"errors"
	"testing"
)

func TestParseCommand(t *testing.T) {
	tests := []struct {
		line string
		want command
	}{
		{"CAPA", command{verb: "CAPA"}},
		{"capa", command{verb: "CAPA"}},
		{"uSeR alice", command{verb: "USER", arg: "alice", hasArg: true}},
		{"PASS  two  spaces ", command{verb: "PASS", arg: " two  spaces ", hasArg: true}},
		{"PASS ", command{verb: "PASS", arg: "", hasArg: true}},
		{"AUTH PLAIN =", command{verb: "AUTH", arg: "PLAIN =", hasArg: true}},
		{"", command{}},
		{" USER", command{verb: "", arg: "USER", hasArg: true}},
		{"VERYLONGVERB x", command{verb: "", arg: "x", hasArg: true}},
		{"ÜSER x", command{verb: "ÜSER", arg: "x", hasArg: true}},
		{"US\x00R x", command{verb: "US\x00R", arg: "x", hasArg: true}},
	}
	for _, tt := range tests {
		if got := parseCommand([]byte(tt.line)); got != tt.want {
			t.Errorf("parseCommand(%q) = %+v, want %+v", tt.line, got, tt.want)
		}
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestDecodeSASL(t *testing.T) {
	tests := []struct {
		in   string
		want string
		err  error
	}{
		{"=", "", nil},
		{"*", "", errCancelled},
		{b64("\x00alice\x00pw"), "\x00alice\x00pw", nil},
		{"YWxpY2U", "alice", nil}, // no padding
		{"YWxpY2U=", "alice", nil},
		{"YWxpY2U==", "", errBadBase64},
		{"not base64!", "", errBadBase64},
		{"YW xp", "", errBadBase64},
		{"", "", nil},
	}
	for _, tt := range tests {
		got, err := decodeSASL([]byte(tt.in))
		if string(got) != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("decodeSASL(%q) = %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestDecodePLAIN(t *testing.T) {
	tests := []struct {
		in              string
		login, password string
		err             error
	}{
		{"\x00alice\x00secret", "alice", "secret", nil},
		{"alice\x00alice\x00secret", "alice", "secret", nil},
		{"\x00alice\x00", "alice", "", nil},
		{"\x00alice\x00pass word", "alice", "pass word", nil},
		{"bob\x00alice\x00secret", "alice", "", errAuthzid},
		{"\x00\x00secret", "", "", errMalformed},
		{"alice\x00secret", "", "", errMalformed},
		{"secret", "", "", errMalformed},
		{"", "", "", errMalformed},
		{"\x00alice\x00se\x00cret", "", "", errMalformed},
	}
	for _, tt := range tests {
		login, password, err := decodePLAIN([]byte(tt.in))
		if login != tt.login || password != tt.password || !errors.Is(err, tt.err) {
			t.Errorf("decodePLAIN(%q) = %q, %q, %v; want %q, %q, %v", tt.in, login, password, err, tt.login, tt.password, tt.err)
		}
	}
}

func TestCapabilities(t *testing.T) {
	s := New(Options{})
	want := "+OK Capability list follows\r\nUSER\r\nSASL PLAIN LOGIN\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n" +
		"TOP\r\nUIDL\r\nPIPELINING\r\nIMPLEMENTATION xoauthd\r\n.\r\n"
	if s.capa != want {
		t.Fatalf("CAPA reply %q, want %q", s.capa, want)
	}
	if s.opts.PreAuthTimeout != DefaultPreAuthTimeout || s.opts.IdleTimeout != DefaultIdleTimeout {
		t.Fatalf("defaults not applied: %+v", s.opts)
	}
}
