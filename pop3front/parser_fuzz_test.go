package pop3front

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzPOP3Parser drives the pre-auth parsing pieces without sockets, fast
// enough for long campaigns: the bounded line reader over arbitrary input,
// the command split of every line, and the SASL/PLAIN decoding of it.
func FuzzPOP3Parser(f *testing.F) {
	for _, s := range []string{
		"CAPA\r\n", "USER erp\r\nPASS pass with spaces\r\n", "AUTH PLAIN AGVycABwdw==\r\n",
		"AUTH LOGIN\r\nZXJw\r\ncHc=\r\n", "*\r\n", "=\r\n", "quit\n", strings.Repeat("A", maxLine+10),
		"\x00\xff\r\n", "AUTH PLAIN ZXJwAGVycABwdw\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(in), maxLine)
		for range 64 {
			line, err := readLine(r)
			if err != nil {
				if len(line) != 0 {
					t.Fatalf("error %v with a line", err)
				}
				if errors.Is(err, errLineTooLong) && r.Buffered() > maxLine {
					t.Fatalf("reader grew past %d bytes", maxLine)
				}
				return
			}
			if len(line) > maxLine || bytes.IndexByte(line, '\n') >= 0 {
				t.Fatalf("line of %d bytes or with LF: %q", len(line), line)
			}
			cmd := parseCommand(line)
			if len(cmd.verb) > maxVerb || strings.ContainsAny(cmd.verb, "abcdefghijklmnopqrstuvwxyz") {
				t.Fatalf("verb %q not bounded or not upper-cased", cmd.verb)
			}
			if msg, err := decodeSASL(line); err == nil {
				login, pass, perr := decodePLAIN(msg)
				if perr == nil && (login == "" || strings.IndexByte(pass, 0) >= 0) {
					t.Fatalf("PLAIN %q gave login %q, password with NUL", msg, login)
				}
			}
		}
	})
}
