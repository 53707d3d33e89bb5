package imapfront

import (
	"testing"
)

// TestFarewell: the BYE is offered only between two whole responses, a
// literal's bytes (CRLFs included) being part of its response.
func TestFarewell(t *testing.T) {
	tests := []struct {
		name     string
		client   string
		upstream []string // as the relay writes it, in pieces
		bye      bool
	}{
		{"nothing yet", "", nil, true},
		{"in IDLE", "a IDLE\r\n", []string{"+ idling\r\n"}, true},
		{"tagged reply", "", []string{"a OK done\r\n"}, true},
		{"line cut", "", []string{"* 3 EXI"}, false},
		{"line split", "", []string{"* 3 EXI", "STS\r\n"}, true},
		{"literal announced", "", []string{"* 1 FETCH (BODY[] {12}\r\n"}, false},
		{"literal with a CRLF inside", "", []string{"* 1 FETCH (BODY[] {12}\r\n", "Hi\r\n\r\nthere"}, false},
		{"literal finished, line open", "", []string{"* 1 FETCH (BODY[] {6}\r\nHi\r\n\r\n"}, false},
		{"literal finished, line ended", "", []string{"* 1 FETCH (BODY[] {6}\r\nHi\r\n\r\n)\r\n"}, true},
		{"literal size split", "", []string{"* 1 FETCH (BODY[] {1", "2}\r\nHi\r\n\r\nthere)\r\n"}, true},
		{"literal size split, open", "", []string{"* 1 FETCH (BODY[] {1", "2}\r\nHi\r\n\r\nthe"}, false},
		{"literal8", "", []string{"* 1 FETCH (BINARY[] ~{3}\r\nabc"}, false},
		{"empty literal", "", []string{"* 1 FETCH (BODY[] {0}\r\n"}, false},
		{"empty literal then end", "", []string{"* 1 FETCH (BODY[] {0}\r\n)\r\n"}, true},
		{"braces not a literal", "", []string{"* OK [ALERT] {not a literal}\r\n"}, true},
		{"two literals", "", []string{"* 1 FETCH (A {2}\r\nab B {3}\r\nxy", "z)\r\n"}, true},
		{"size beyond reason", "", []string{"* 1 FETCH (A {9999999999999999999}\r\n)\r\n"}, false},
		{"COMPRESS", "a COMPRESS DEFLATE\r\n", []string{"a OK DEFLATE active\r\n"}, false},
		{"compress lower case, split", "a comp", []string{"a OK\r\n"}, true},
		{"LOGOUT", "a LOGOUT\r\n", []string{"* BYE\r\n", "a OK\r\n"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &farewell{}
			f.ClientBytes([]byte(tt.client))
			for _, p := range tt.upstream {
				f.UpstreamBytes([]byte(p))
			}
			got := f.Goodbye()
			if (got != nil) != tt.bye {
				t.Fatalf("goodbye %q, want one: %v", got, tt.bye)
			}
			if got != nil && string(got) != "* BYE Server shutting down\r\n" {
				t.Errorf("goodbye %q", got)
			}
		})
	}
	// A COMPRESS split across reads is seen too.
	f := &farewell{}
	f.ClientBytes([]byte("x1 COMPR"))
	f.ClientBytes([]byte("ESS DEFLATE\r\n"))
	if f.Goodbye() != nil {
		t.Error("goodbye after a COMPRESS split in two reads")
	}
}

// FuzzFarewell: how the bytes are cut into reads does not change the
// answer, and nothing panics.
func FuzzFarewell(f *testing.F) {
	f.Add([]byte("* 1 FETCH (BODY[] {6}\r\nHi\r\n\r\n)\r\n"), []byte("a COMPRESS DEFLATE\r\n"), uint8(3))
	f.Add([]byte("+ idling\r\n* 2 EXISTS\r\n"), []byte("a IDLE\r\nDONE\r\n"), uint8(1))
	f.Add([]byte("* 1 FETCH (A {0}\r\n{1}\r\nx)"), []byte(""), uint8(7))
	f.Fuzz(func(t *testing.T, up, client []byte, step uint8) {
		whole := &farewell{}
		whole.ClientBytes(client)
		whole.UpstreamBytes(up)
		cut := &farewell{}
		n := int(step%16) + 1
		for i := 0; i < len(client); i += n {
			cut.ClientBytes(client[i:min(i+n, len(client))])
		}
		for i := 0; i < len(up); i += n {
			cut.UpstreamBytes(up[i:min(i+n, len(up))])
		}
		if (whole.Goodbye() == nil) != (cut.Goodbye() == nil) {
			t.Fatalf("in one read: %q, in reads of %d: %q", whole.Goodbye(), n, cut.Goodbye())
		}
	})
}

// BenchmarkFarewell measures what following a FETCH response costs the
// relay, per byte sent to the client: a 1 MiB literal (skipped without
// looking at it) and 1 MiB of short untagged lines, in 16 KiB reads.
func BenchmarkFarewell(b *testing.B) {
	var resp []byte
	resp = append(resp, "* 1 FETCH (BODY[] {1048576}\r\n"...)
	resp = append(resp, make([]byte, 1<<20)...)
	resp = append(resp, ")\r\n"...)
	for len(resp) < 2<<20 {
		resp = append(resp, "* 12345 FETCH (FLAGS (\\Seen) UID 67890)\r\n"...)
	}
	resp = append(resp, "a OK FETCH completed\r\n"...)
	b.SetBytes(int64(len(resp)))
	for b.Loop() {
		f := &farewell{}
		for i := 0; i < len(resp); i += 16 << 10 {
			f.UpstreamBytes(resp[i:min(i+16<<10, len(resp))])
		}
		if f.Goodbye() == nil {
			b.Fatal("no goodbye after a whole response")
		}
	}
}
