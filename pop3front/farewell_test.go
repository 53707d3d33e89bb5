package pop3front

import "testing"

// TestFarewell: the -ERR goodbye is offered only where no response has
// begun and none is unfinished; a multi-line response ends at its "." line.
func TestFarewell(t *testing.T) {
	tests := []struct {
		name string
		// Alternating: client bytes, then upstream bytes, and so on.
		steps []string
		bye   bool
	}{
		{"nothing yet", nil, true},
		{"STAT answered", []string{"STAT\r\n", "+OK 2 320\r\n"}, true},
		{"STAT pending", []string{"STAT\r\n", ""}, true},
		{"status line cut", []string{"STAT\r\n", "+OK 2"}, false},
		{"RETR body under way", []string{"RETR 1\r\n", "+OK 120 octets\r\nSubject: x\r\n\r\n"}, false},
		{"RETR body with a dot-stuffed line", []string{"RETR 1\r\n", "+OK\r\n..\r\n.. x\r\n"}, false},
		{"RETR finished", []string{"RETR 1\r\n", "+OK\r\nSubject: x\r\n\r\n..\r\n.\r\n"}, true},
		{"RETR refused", []string{"RETR 9\r\n", "-ERR no such message\r\n"}, true},
		{"LIST without argument", []string{"LIST\r\n", "+OK 2 messages\r\n1 120\r\n"}, false},
		{"LIST without argument finished", []string{"LIST\r\n", "+OK 2 messages\r\n1 120\r\n2 200\r\n.\r\n"}, true},
		{"LIST with argument", []string{"LIST 1\r\n", "+OK 1 120\r\n"}, true},
		{"UIDL lower case", []string{"uidl\r\n", "+OK\r\n1 abc\r\n"}, false},
		{"TOP finished", []string{"TOP 1 0\r\n", "+OK\r\nSubject: x\r\n\r\n.\r\n"}, true},
		{"CAPA under way", []string{"CAPA\r\n", "+OK\r\nTOP\r\n"}, false},
		{"pipelined, first answered", []string{"RETR 1\r\nDELE 1\r\n", "+OK\r\nx\r\n.\r\n"}, true},
		{"pipelined, second under way", []string{"STAT\r\nRETR 1\r\n", "+OK 1 5\r\n+OK\r\nx\r\n"}, false},
		{"command split", []string{"RE", "", "TR 1\r\n", "+OK\r\nbody\r\n"}, false},
		{"response to nothing", []string{"", "+OK surprise\r\n"}, false},
		{"DELE then no QUIT", []string{"DELE 1\r\n", "+OK marked\r\n"}, true},
		{"long LIST argument", []string{"LIST                    1\r\n", "+OK 1 120\r\n"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &farewell{}
			for i, s := range tt.steps {
				if i%2 == 0 {
					f.ClientBytes([]byte(s))
				} else {
					f.UpstreamBytes([]byte(s))
				}
			}
			got := f.Goodbye()
			if (got != nil) != tt.bye {
				t.Fatalf("goodbye %q, want one: %v", got, tt.bye)
			}
			if got != nil && string(got) != replyShutdown {
				t.Errorf("goodbye %q", got)
			}
		})
	}
}

// FuzzFarewell: how the bytes are cut into reads does not change the
// answer, and nothing panics.
func FuzzFarewell(f *testing.F) {
	f.Add("RETR 1\r\nLIST\r\n", "+OK\r\nx\r\n.\r\n+OK\r\n1 2\r\n.\r\n", uint8(3))
	f.Add("STAT\r\n", "+OK 1 2\r\n", uint8(0))
	f.Fuzz(func(t *testing.T, client, up string, step uint8) {
		// The client's commands come first, as they do on the wire.
		whole := &farewell{}
		whole.ClientBytes([]byte(client))
		whole.UpstreamBytes([]byte(up))
		cut := &farewell{}
		n := int(step%16) + 1
		for _, part := range chunks(client, n) {
			cut.ClientBytes([]byte(part))
		}
		for _, part := range chunks(up, n) {
			cut.UpstreamBytes([]byte(part))
		}
		if (whole.Goodbye() == nil) != (cut.Goodbye() == nil) {
			t.Fatalf("in one read: %q, in reads of %d: %q", whole.Goodbye(), n, cut.Goodbye())
		}
	})
}

// chunks cuts s into pieces of n bytes.
func chunks(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	if s != "" {
		out = append(out, s)
	}
	return out
}

// BenchmarkFarewell measures what following a RETR response costs the
// relay, per byte sent to the client (16 KiB reads of 78-byte lines).
func BenchmarkFarewell(b *testing.B) {
	var body []byte
	body = append(body, "+OK message follows\r\n"...)
	for len(body) < 1<<20 {
		body = append(body, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n"...)
	}
	body = append(body, ".\r\n"...)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		f := &farewell{}
		f.ClientBytes([]byte("RETR 1\r\n"))
		for i := 0; i < len(body); i += 16 << 10 {
			f.UpstreamBytes(body[i:min(i+16<<10, len(body))])
		}
		if f.Goodbye() == nil {
			b.Fatal("no goodbye after a whole response")
		}
	}
}
