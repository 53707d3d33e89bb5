package wire

import (
	"bufio"
	"bytes"
	"errors"
	"net/textproto"
	"strings"
	"testing"

	"github.com/xoauthd/xoauthd/internal/testkit"
	"github.com/xoauthd/xoauthd/smtpfront/internal/wire/wiretest"
)

// bulkDecode runs Decoder over src handed in pieces of at most step
// bytes, the unused rest carried into the next piece as relayMessage does.
func bulkDecode(src []byte, step int) (msg []byte, end int) {
	var d Decoder
	emit := func(run []byte) { msg = append(msg, run...) }
	var pend []byte
	off := 0 // index in src of pend[0]
	for next := 0; ; {
		k := min(step, len(src)-next)
		pend = append(pend, src[next:next+k]...)
		next += k
		used, done := d.Decode(pend, emit)
		if done {
			return msg, off + used
		}
		pend = pend[used:]
		off += used
		if next == len(src) {
			return msg, -1
		}
	}
}

// bulkEncode runs Encoder over msg in pieces of at most step bytes with
// a buffer of bufCap, then ends the data as the session does: the returned
// tail through textproto's DotWriter, then its Close.
func bulkEncode(t testing.TB, msg []byte, step, bufCap int) []byte {
	var out bytes.Buffer
	taken := int64(0)
	e := NewEncoder(&out, make([]byte, bufCap), func(n int64) { taken += n })
	for p := msg; len(p) > 0; {
		k := min(step, len(p))
		if _, err := e.Write(p[:k]); err != nil {
			t.Fatal(err)
		}
		p = p[k:]
	}
	tail, err := e.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if taken != int64(len(msg)) {
		t.Fatalf("encoder counted %d message bytes, want %d", taken, len(msg))
	}
	bw := bufio.NewWriter(&out)
	dw := textproto.NewWriter(bw).DotWriter()
	dw.Write(tail)
	dw.Close()
	return out.Bytes()
}

func TestDotDecoderMatchesGoSMTP(t *testing.T) {
	for _, tc := range wiretest.Streams {
		want, wantEnd := wiretest.Decode([]byte(tc))
		for step := 1; step <= len(tc); step++ {
			got, end := bulkDecode([]byte(tc), step)
			if !bytes.Equal(got, want) || end != wantEnd {
				t.Fatalf("%q in pieces of %d: got %q end %d, want %q end %d", tc, step, got, end, want, wantEnd)
			}
		}
	}
}

func TestDotEncoderMatchesTextproto(t *testing.T) {
	msgs := append([]string{"", "\r", "\n", ".", "x", "x\r", "\r\r\n", "a\n.b\n", ".\r\n.\r\n", "line\r\n", strings.Repeat("x.\r\n.y\n\r", 40)}, wiretest.Streams...)
	for _, m := range msgs {
		want := wiretest.Encode([]byte(m))
		for step := 1; step <= max(len(m), 1); step++ {
			for _, bufCap := range []int{8, 9, 64, 4096} {
				if got := bulkEncode(t, []byte(m), step, bufCap); !bytes.Equal(got, want) {
					t.Fatalf("%q in pieces of %d, buffer %d: got %q, want %q", m, step, bufCap, got, want)
				}
			}
		}
	}
}

// TestDotCodecLinearTime guards against a search that restarts at every
// '\r': a megabyte of "\rx" without a line end must not take quadratic
// time (it would take minutes).
func TestDotCodecLinearTime(t *testing.T) {
	msg := bytes.Repeat([]byte("\rx"), 1<<19)
	msg = append(msg, "\r\n.\r\n"...)
	want, wantEnd := wiretest.Decode(msg)
	got, end := bulkDecode(msg, len(msg))
	if !bytes.Equal(got, want) || end != wantEnd {
		t.Fatal("decoder differs from go-smtp on a long line of bare CRs")
	}
	if !bytes.Equal(bulkEncode(t, got, len(got), 64<<10), wiretest.Encode(got)) {
		t.Fatal("encoder differs from textproto on a long line of bare CRs")
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	w.n++
	return 0, errors.New("upstream gone")
}

func TestDotEncoderKeepsFirstWriteError(t *testing.T) {
	w := &failWriter{}
	e := NewEncoder(w, make([]byte, 64), nil)
	msg := bytes.Repeat([]byte("0123456789\r\n"), 100)
	if _, err := e.Write(msg); err == nil {
		t.Fatal("Write after a failed flush returned no error")
	}
	e.Write(msg)
	if _, err := e.Finish(); err == nil || err.Error() != "upstream gone" {
		t.Fatalf("finish: %v, want the write error", err)
	}
	if w.n != 1 {
		t.Fatalf("%d writes after the first failed, want none", w.n-1)
	}
}

func FuzzDotDecoder(f *testing.F) {
	for _, tc := range wiretest.Streams {
		f.Add([]byte(tc), uint16(3))
	}
	f.Fuzz(func(t *testing.T, src []byte, step uint16) {
		want, wantEnd := wiretest.Decode(src)
		got, end := bulkDecode(src, int(step)%64+1)
		if !bytes.Equal(got, want) || end != wantEnd {
			t.Fatalf("got %q end %d, want %q end %d", got, end, want, wantEnd)
		}
	})
}

func FuzzDotEncoder(f *testing.F) {
	for _, tc := range wiretest.Streams {
		f.Add([]byte(tc), uint16(3), uint8(0))
	}
	f.Fuzz(func(t *testing.T, msg []byte, step uint16, bufCap uint8) {
		want := wiretest.Encode(msg)
		if got := bulkEncode(t, msg, int(step)%64+1, int(bufCap)%200+8); !bytes.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
}

// benchMessage is 1 MiB of 76-column lines, some starting with a dot.
var benchMessage = testkit.DottedMessage(1 << 20)

// BenchmarkDotDecode compares Decoder with the byte-at-a-time reader it
// replaces (wiretest.Decode, go-smtp's algorithm) on a stuffed 1 MiB message.
func BenchmarkDotDecode(b *testing.B) {
	stuffed := wiretest.Encode(benchMessage)
	b.Run("bulk", func(b *testing.B) {
		b.SetBytes(int64(len(stuffed)))
		for b.Loop() {
			var d Decoder
			d.Decode(stuffed, func([]byte) {})
		}
	})
	b.Run("bytewise", func(b *testing.B) {
		b.SetBytes(int64(len(stuffed)))
		for b.Loop() {
			wiretest.Decode(stuffed)
		}
	})
}

// BenchmarkDotEncode compares Encoder with net/textproto's DotWriter
// (what go-smtp's client uses) on a 1 MiB message.
func BenchmarkDotEncode(b *testing.B) {
	buf := make([]byte, 128<<10) // smtpfront's encoder buffer
	b.Run("bulk", func(b *testing.B) {
		b.SetBytes(int64(len(benchMessage)))
		for b.Loop() {
			e := NewEncoder(discardWriter{}, buf, nil)
			e.Write(benchMessage)
			e.Finish()
		}
	})
	b.Run("textproto", func(b *testing.B) {
		b.SetBytes(int64(len(benchMessage)))
		bw := bufio.NewWriter(discardWriter{})
		for b.Loop() {
			dw := textproto.NewWriter(bw).DotWriter()
			dw.Write(benchMessage)
			dw.Close()
		}
	})
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }
