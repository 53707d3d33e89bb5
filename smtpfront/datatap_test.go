package smtpfront

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/smtpfront/internal/wire"
	"github.com/xoauthd/xoauthd/smtpfront/internal/wire/wiretest"
)

func TestAtLineStart(t *testing.T) {
	tests := []struct {
		tail string
		want bool
	}{
		{"A\r\n", true},
		{"x\r\n", true},
		{" \r\n", true},
		{".\r\n", false},  // "..\r\n" or the end line: not sure
		{"\r\r\n", false}, // "\r\r\n" is not a line end for go-smtp
		{"\n\r\n", false},
		{"\x00\x00\x00", false},
		{"ab\n", false},
		{"a\rb", false},
	}
	for _, tt := range tests {
		var tail [3]byte
		copy(tail[:], tt.tail)
		if got := atLineStart(tail); got != tt.want {
			t.Errorf("atLineStart(%q) = %v, want %v", tt.tail, got, tt.want)
		}
	}
}

func TestLineStartAfter(t *testing.T) {
	tests := []struct {
		tail, d string
		want    int
	}{
		{"xyz", "abc\r\ndef", 5},
		{"xyz", "abc", 3},           // none: all of it
		{"xy\r", "\nmore", 1},       // the line end straddles the tail
		{"x\r\r", "\nab\r\n", 5},    // "\r\r\n" does not count
		{"abc", "..\r\nq\r\n", 7},   // "..\r\n" does not count
		{"abc", ".\r\n", 3},         // the end line: handed to go-smtp
		{"abc", "\r\n", 2},          // "c\r\n" across the tail
		{"ab.", "\r\nx\r\n", 5},     // ".\r\n" across the tail does not count
		{"abc", "\n\r\nz\r\n", 6},   // a bare LF before the CRLF
		{"\x00\x00\x00", "\r\n", 2}, // a NUL counts as data for go-smtp too
	}
	for _, tt := range tests {
		var tail [3]byte
		copy(tail[:], tt.tail)
		if got := lineStartAfter(tail, []byte(tt.d)); got != tt.want {
			t.Errorf("lineStartAfter(%q, %q) = %d, want %d", tt.tail, tt.d, got, tt.want)
		}
	}
}

func TestNoteTail(t *testing.T) {
	var c clientConn
	for _, p := range []string{"ab", "c", "", "defg", "h", "ij"} {
		c.noteTail([]byte(p))
	}
	if string(c.tail[:]) != "hij" {
		t.Fatalf("tail %q, want %q", c.tail[:], "hij")
	}
}

func TestCheckLines(t *testing.T) {
	tests := []struct {
		p     string
		start int
		max   int
		ok    bool
		count int
	}{
		{"abc\r\n", 1, 10, true, 1},
		{"abcdefgh\r\n", 1, 10, true, 1}, // 1 + 8 + '\r' = 10
		{"abcdefghi\r\n", 1, 10, false, 0},
		{"abc", 5, 10, true, 8},
		{"abcdef", 5, 10, false, 0},
		{"\n\n\n", 10, 10, true, 1},
	}
	for _, tt := range tests {
		count := tt.start
		ok := checkLines([]byte(tt.p), &count, tt.max)
		if ok != tt.ok || ok && count != tt.count {
			t.Errorf("checkLines(%q, %d, %d) = %v count %d, want %v count %d", tt.p, tt.start, tt.max, ok, count, tt.ok, tt.count)
		}
	}
}

var bulkBytesRE = regexp.MustCompile(`msg="message relayed".* bytes=(\d+) bulk_bytes=(\d+)`)

// relayedLogs returns (bytes, bulk_bytes) of each "message relayed" line.
func relayedLogs(log string) [][2]int {
	var out [][2]int
	for _, m := range bulkBytesRE.FindAllStringSubmatch(log, -1) {
		n, _ := strconv.Atoi(m[1])
		b, _ := strconv.Atoi(m[2])
		out = append(out, [2]int{n, b})
	}
	return out
}

// TestDataTapTaken checks that a DATA message is relayed by the bulk relay
// (all but what go-smtp's reader had buffered) and arrives byte for byte.
// It fails if a go-smtp release stops handing its DATA reader over.
func TestDataTapTaken(t *testing.T) {
	h := newHarness(t)
	c := h.loggedIn()
	msg := testkit.DottedMessage(1 << 20)
	if err := send(c, testMailbox, []string{"bob@example.net"}, msg); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	msgs := h.up.messages()
	if len(msgs) != 1 || !bytes.Equal(msgs[0].data, msg) {
		t.Fatalf("upstream got %d messages, or not the message sent", len(msgs))
	}
	logs := relayedLogs(h.log.waitFor(t, "message relayed"))
	if len(logs) != 1 || logs[0][0] != len(msg) || logs[0][1] < len(msg)-4096 {
		t.Fatalf("relayed (bytes, bulk bytes) %v, want (%d, at least %d)", logs, len(msg), len(msg)-4096)
	}
}

// TestDataTapQuirks sends streams with go-smtp's DATA quirks (dot lines,
// bare CR and LF, "\r\r\n", ".\r" + data) behind fillers of many lengths,
// pipelined behind DATA or not. After "DATA\r\n" the tap hands over at
// once; after "DATA\n" or "DATA\r\r\n" (which go-smtp accepts) go-smtp's
// reader is not certainly at a line start, so it first decodes up to one,
// and the hand-over starts from the state that leaves it in. What reaches
// the upstream must be what go-smtp alone would have relayed, and the
// session must go on in step (the pipelined NOOP after each message).
func TestDataTapQuirks(t *testing.T) {
	h := newHarness(t)
	tc := h.loggedInTranscript()
	const bufioSize = 4096 // go-smtp's reader (textproto over bufio)
	var wants [][]byte
	for i, stream := range wiretest.Streams {
		var fills []int
		for f := bufioSize - 100 - len(stream) - 2; f <= bufioSize-100+1; f++ {
			fills = append(fills, f)
		}
		fills = append(fills, 0, 2, 3, 60)
		for _, fill := range fills {
			for _, pipelined := range []bool{false, true} {
				envelope := "MAIL FROM:<billing@example.com>\r\nRCPT TO:<a@example.net>\r\nDATA" + []string{"\r\n", "\n", "\r\r\n"}[(i+fill)%3]
				raw := fillerLines(fill) + stream
				msg, end := wiretest.Decode([]byte(raw))
				if end < 0 {
					continue // no end line, or the filler swallowed it ("f" + ".\r\n")
				}
				// What the upstream's go-smtp server gets after xoauthd
				// stuffs msg as textproto's DotWriter would.
				want, _ := wiretest.Decode(wiretest.Encode(msg))
				wants = append(wants, want)
				if pipelined {
					tc.write(envelope + raw[:end+3] + "NOOP\r\n")
				} else {
					tc.write(envelope)
				}
				tc.expect("250 ")
				tc.expect("250 ")
				tc.expect("354 ")
				if !pipelined {
					tc.write(raw[:end+3] + "NOOP\r\n")
				}
				tc.expect("250 ")
				tc.expect("250 ") // NOOP
			}
		}
	}
	tc.cmd("QUIT", "221")
	msgs := h.up.messages()
	if len(msgs) != len(wants) {
		t.Fatalf("upstream got %d messages, want %d", len(msgs), len(wants))
	}
	for i, m := range msgs {
		if !bytes.Equal(m.data, wants[i]) {
			t.Fatalf("message %d: upstream got %q, want %q", i, tail(m.data), tail(wants[i]))
		}
	}
	bulk, partly := 0, 0
	for _, l := range relayedLogs(h.log.waitFor(t, "session closed")) {
		if l[1] > 0 {
			bulk++
			if l[1] < l[0] {
				partly++
			}
		}
	}
	if bulk == 0 || partly == 0 {
		t.Fatalf("%d messages through the bulk relay, %d of them after go-smtp's reader: want some of each", bulk, partly)
	}
}

// fillerLines returns n bytes of CRLF lines of plain text (for n > 1, the
// last line ends with CRLF too).
func fillerLines(n int) string {
	var b strings.Builder
	for b.Len() < n {
		k := min(n-b.Len(), 78)
		if n-b.Len()-k == 1 {
			k--
		}
		if k < 2 {
			b.WriteString(strings.Repeat("f", k))
			break
		}
		b.WriteString(strings.Repeat("f", k-2) + "\r\n")
	}
	return b.String()
}

func tail(b []byte) []byte {
	if len(b) > 80 {
		return b[len(b)-80:]
	}
	return b
}

// TestDataTapClientBreaksOff: a client that goes away in the middle of a
// bulk-relayed message submits nothing.
func TestDataTapClientBreaksOff(t *testing.T) {
	h := newHarness(t)
	tc := h.loggedInTranscript()
	tc.data("billing@example.com", "a@example.net")
	tc.write(string(testkit.DottedMessage(300 << 10)))
	tc.conn.Close()
	h.log.waitFor(t, "client data ended early", "session closed")
	if msgs := h.up.messages(); len(msgs) != 0 {
		t.Fatalf("upstream got %d messages from a client that broke off", len(msgs))
	}
}

// TestDataTapLongLine: a line over the limit in the bulk-relayed part gets
// go-smtp's answer to a long line (the session ends) and submits nothing.
func TestDataTapLongLine(t *testing.T) {
	for _, at := range []int{0, 100 << 10} {
		t.Run(fmt.Sprint(at), func(t *testing.T) {
			h := newHarness(t)
			tc := h.loggedInTranscript()
			tc.data("billing@example.com", "a@example.net")
			tc.write(fillerLines(at) + strings.Repeat("x", maxLineLength+10) + "\r\nmore\r\n.\r\n")
			tc.expect("500 5.5.2")
			rest := tc.expectClosed()
			if rest != "" && !strings.HasPrefix(rest, "500 ") {
				t.Fatalf("after the long line: %q", rest)
			}
			if msgs := h.up.messages(); len(msgs) != 0 {
				t.Fatalf("upstream got %d messages", len(msgs))
			}
		})
	}
}

// TestDataTapSizeLimit: the limit holds in the bulk relay to the byte (what
// go-smtp's reader allows: fewer bytes than the limit), and the session
// goes on after a refused message.
func TestDataTapSizeLimit(t *testing.T) {
	const limit = 64 << 10
	h := newHarness(t, func(o *Options) { o.MaxMessageBytes = limit })
	tc := h.loggedInTranscript()
	for _, tt := range []struct {
		size int
		want string
	}{{limit - 1, "250 "}, {limit + 1, "552 5.3.4"}, {limit - 100, "250 "}, {4 * limit, "552 5.3.4"}, {100, "250 "}} {
		msg := fillerLines(tt.size)
		tc.data("billing@example.com", "a@example.net")
		tc.write(msg + ".\r\n")
		tc.expect(tt.want)
	}
	tc.cmd("QUIT", "221")
	msgs := h.up.messages()
	if len(msgs) != 3 || len(msgs[0].data) != limit-1 || len(msgs[1].data) != limit-100 || len(msgs[2].data) != 100 {
		t.Fatalf("upstream got %d messages, want the three within the limit", len(msgs))
	}
}

// TestRelayMessageLimit checks the size bound of the bulk relay at its
// edges: limit is what go-smtp's reader has left (0: nothing more may
// come), -1 none.
func TestRelayMessageLimit(t *testing.T) {
	tests := []struct {
		limit   int64
		tooBig  bool
		written string
	}{
		{-1, false, "ab\r\n..\r\n"},
		{7, false, "ab\r\n..\r\n"}, // "ab\r\n" + ".\r\n" after unstuffing: 7 bytes
		{6, true, ""},
		{5, true, ""},
		{0, true, ""},
	}
	for _, tt := range tests {
		c := &clientConn{tap: tapTaken, pend: []byte("ab\r\n..\r\n.\r\nQUIT\r\n")}
		var out bytes.Buffer
		enc := wire.NewEncoder(&out, make([]byte, 64), nil)
		n, err := c.relayMessage(enc, tt.limit)
		tail, _ := enc.Finish()
		out.Write(tail)
		if n != 7 || (err != nil) != tt.tooBig || tt.tooBig && err != smtp.ErrDataTooLarge {
			t.Errorf("limit %d: n %d err %v, want 7 and too large %v", tt.limit, n, err, tt.tooBig)
		}
		if !tt.tooBig && out.String() != tt.written {
			t.Errorf("limit %d: wrote %q, want %q", tt.limit, out.String(), tt.written)
		}
		if string(c.pend) != ".\r\nQUIT\r\n" || c.tap != tapOff {
			t.Errorf("limit %d: left %q (tap %d), want the end line and QUIT for go-smtp", tt.limit, c.pend, c.tap)
		}
	}
}

// TestRelayStreamsBeforeTheEnd: while the client's message is still coming,
// what has arrived goes on to the upstream, so that the upstream works on
// the message meanwhile instead of waiting for its end.
func TestRelayStreamsBeforeTheEnd(t *testing.T) {
	h := newHarness(t)
	tc := h.loggedInTranscript()
	tc.write("MAIL FROM:<billing@example.com>\r\nRCPT TO:<a@example.net>\r\nDATA\r\n")
	for _, want := range []string{"250 ", "250 ", "354 "} {
		tc.expect(want)
	}
	first := "Subject: streamed\r\n\r\n" + strings.Repeat("the first part, sent before a pause\r\n", 1000)
	tc.write(first)
	testkit.Eventually(t, 10*time.Second, "the upstream has the first part", func() bool { return h.up.dataRead.Load() >= int64(maxTLSRecord) })
	tc.write("the rest\r\n.\r\n")
	tc.expect("250 ")
	tc.cmd("QUIT", "221 ")
	if msgs := h.up.messages(); len(msgs) != 1 || string(msgs[0].data) != first+"the rest\r\n" {
		t.Fatalf("upstream got %d messages, or not the message sent", len(msgs))
	}
}
