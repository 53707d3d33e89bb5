package testkit

import (
	"bytes"
	"math/rand/v2"
)

// BigMessage returns a message of about size bytes (the same for the same
// size) with CRLF lines of varying length, some starting with "." (stuffed
// on a POP3 or SMTP wire), one now and then that is only ".", and some with
// 8-bit bytes: what a relay must carry byte for byte.
func BigMessage(size int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	var printable [2 * 95]byte
	for i := range printable {
		printable[i] = byte(' ' + i%95)
	}
	b := bytes.NewBufferString("Subject: big\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	for b.Len() < size {
		off := rng.IntN(95)
		line := printable[off : off+rng.IntN(95)]
		switch rng.IntN(20) {
		case 0:
			line = append([]byte("."), line...)
		case 1:
			line = []byte(".")
		case 2:
			line = append(line, "grüße"...)
		}
		b.Write(line)
		b.WriteString("\r\n")
	}
	return b.Bytes()
}
