package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// Message shape.
const (
	lineChars = 76 // characters of a body line, as in base64 MIME bodies
	// bodySeed makes every run fetch the same bytes.
	bodySeed = "xoauthd benchmark message bodies"
)

// base64Alphabet is what the body lines are made of: no line starts with
// a dot, so SMTP and POP3 need no dot-stuffing.
const base64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// messageBody returns about size bytes of 76-character CRLF lines of
// pseudo-random base64 characters.
func messageBody(size int) []byte {
	rng := rand.New(rand.NewChaCha8([32]byte([]byte(bodySeed))))
	lines := max(1, size/(lineChars+2))
	b := make([]byte, 0, lines*(lineChars+2))
	for range lines {
		for range lineChars {
			b = append(b, base64Alphabet[rng.IntN(len(base64Alphabet))])
		}
		b = append(b, '\r', '\n')
	}
	return b
}

// message returns an RFC 5322 message with the given body.
func message(id string, body []byte) []byte {
	var b bytes.Buffer
	date := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC).Format(time.RFC1123Z)
	fmt.Fprintf(&b, "From: sender@contoso.test\r\nTo: %s\r\nSubject: benchmark %s\r\nDate: %s\r\nMessage-ID: <%s@bench.contoso.test>\r\n\r\n",
		benchIdentity, id, date, id)
	return slices.Concat(b.Bytes(), body)
}
