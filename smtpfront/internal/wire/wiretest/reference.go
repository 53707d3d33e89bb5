package wiretest

import (
	"bufio"
	"bytes"
	"net/textproto"
)

// Decode is go-smtp's server DATA reader (its dataReader state machine)
// one byte at a time, as the oracle of Decoder: the message and the
// index of the end-of-data line's dot (-1 when src has none).
func Decode(src []byte) (msg []byte, end int) {
	const (
		beginLine = iota
		dot
		dotCR
		cr
		data
	)
	state := beginLine
	for i, c := range src {
		switch state {
		case beginLine:
			if c == '.' {
				state = dot
				continue
			}
			if c == '\r' {
				state = cr
				break
			}
			state = data
		case dot:
			if c == '\r' {
				state = dotCR
				continue
			}
			state = data
		case dotCR:
			if c == '\n' {
				return msg, i - 2
			}
			state = data
		case cr:
			if c == '\n' {
				state = beginLine
				break
			}
			state = data
		case data:
			if c == '\r' {
				state = cr
			}
		}
		msg = append(msg, c)
	}
	return msg, -1
}

// Encode is net/textproto's DotWriter: what go-smtp's client sends for
// msg, the end-of-data line included.
func Encode(msg []byte) []byte {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	dw := textproto.NewWriter(bw).DotWriter()
	dw.Write(msg)
	dw.Close()
	return out.Bytes()
}

// Streams are streams as a client may send them after DATA, quirks of
// go-smtp's reader included.
var Streams = []string{
	".\r\n",
	"\r\n.\r\n",
	"a\r\n.\r\n",
	"Subject: x\r\n\r\nbody\r\n.\r\n",
	"..\r\n.\r\n",
	"..leading\r\n...two\r\n.\r\n",
	".x\r\n.\r\n",                   // a lone stuffed dot that needed none
	".\rX\r\n.\r\n",                 // ".\r" then data: both dropped
	"a\r\r\n.\r\nb\r\n.\r\n",        // "\r\r\n" does not end a line for go-smtp
	"a\r\r\n.x\r\n.\r\n",            // so the dot after it is data
	".\r\r\n.\r\nnot yet\r\n.\r\n",  // nor does ".\r\r\n"
	"bare\nlf\n.\nstill\r\n.\r\n",   // bare LF: not a line end
	"bare\rcr\r.\r\n.\r\n",          // bare CR
	"crlf\r\n\r\n\r\n.\r\n",         // empty lines
	"end\r\n.\r\nMAIL FROM:<x>\r\n", // pipelined after the end
	"no end at all\r\n",
	"no end at all\r\n.",
	"no end at all\r\n.\r",
	"\xff\x00\xfe binary\r\n.\r\n",
}
