package pop3front

import (
	"bufio"
	"bytes"
	"testing"
)

// BenchmarkPreAuthParse reads and parses a pipelined pre-auth dialogue
// (CAPA, USER/PASS, AUTH PLAIN with its response) from a buffered reader, as
// a session does.
func BenchmarkPreAuthParse(b *testing.B) {
	input := []byte("CAPA\r\nUSER alice\r\nPASS " + alicePassword + "\r\nAUTH PLAIN " + b64("\x00alice\x00"+alicePassword) + "\r\nQUIT\r\n")
	src := bytes.NewReader(input)
	r := bufio.NewReaderSize(src, maxLine)
	b.SetBytes(int64(len(input)))
	b.ReportAllocs()
	for b.Loop() {
		src.Reset(input)
		r.Reset(src)
		for {
			line, err := readLine(r)
			if err != nil {
				break
			}
			cmd := parseCommand(line)
			if cmd.verb == cmdAUTH {
				msg, err := decodeSASL([]byte(cmd.arg[len("PLAIN "):]))
				if err != nil {
					b.Fatal(err)
				}
				if _, _, err := decodePLAIN(msg); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
}
