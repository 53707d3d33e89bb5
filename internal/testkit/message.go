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

// DottedMessage returns a message of about size bytes with 76-column CRLF
// lines, every fiftieth starting with a dot. No line is a lone ".", so the
// bytes may be written as they are after SMTP DATA (a leading dot is then
// stuffing, which the server removes).
func DottedMessage(size int) []byte {
	var b bytes.Buffer
	b.Grow(size + 200)
	b.WriteString("From: <billing@example.com>\r\nTo: <bob@example.net>\r\nSubject: big\r\n\r\n")
	const line = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz+/0123456789ab"
	for i := 0; b.Len() < size; i++ {
		if i%50 == 0 {
			b.WriteString(".")
		}
		b.WriteString(line)
		b.WriteString("\r\n")
	}
	return b.Bytes()
}
