package memupstream

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"net/textproto"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

func TestParsePOP3Command(t *testing.T) {
	tests := []struct {
		in   string
		name string
		args []string
		err  error
	}{
		{"STAT", "STAT", nil, nil},
		{"retr 12", "RETR", []string{"12"}, nil},
		{"Top 1 0", "TOP", []string{"1", "0"}, nil},
		{"AUTH XOAUTH2 =", "AUTH", []string{"XOAUTH2", "="}, nil},
		{"  LIST   3 ", "LIST", []string{"3"}, nil},
		{"", "", nil, errPOP3Empty},
		{"   ", "", nil, errPOP3Empty},
		{"NO\tOP", "", nil, errPOP3Control},
		{"NOOP\r", "", nil, errPOP3Control},
		{"DE\x7fLE", "", nil, errPOP3Control},
		{"RETRIEVE 1", "", nil, errPOP3Keyword},
		{"GO", "", nil, errPOP3Keyword},
		{"ST4T", "", nil, errPOP3Keyword},
		{"ST@T", "", nil, errPOP3Keyword},
		{"STA\xc3\xa9", "", nil, errPOP3Keyword},
		{"TOP 1 2 3", "", nil, errPOP3ArgCount},
	}
	for _, tt := range tests {
		cmd, err := parsePOP3Command([]byte(tt.in))
		if !errors.Is(err, tt.err) {
			t.Errorf("parsePOP3Command(%q) error = %v, want %v", tt.in, err, tt.err)
			continue
		}
		if cmd.name != tt.name || !slices.Equal(cmd.args, tt.args) {
			t.Errorf("parsePOP3Command(%q) = %q %q, want %q %q", tt.in, cmd.name, cmd.args, tt.name, tt.args)
		}
	}
}

func TestParseMsgNum(t *testing.T) {
	tests := []struct {
		in string
		n  int
		ok bool
	}{
		{"1", 1, true},
		{"007", 7, true},
		{"999999999", 999999999, true},
		{"0", 0, false},
		{"", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{"1x", 0, false},
		{"1000000000", 0, false}, // more digits than maxPOP3MsgNum
	}
	for _, tt := range tests {
		if n, ok := parseMsgNum(tt.in); ok != tt.ok || ok && n != tt.n {
			t.Errorf("parseMsgNum(%q) = %d, %v; want %d, %v", tt.in, n, ok, tt.n, tt.ok)
		}
	}
	if n, ok := parseDecimal("0"); n != 0 || !ok {
		t.Errorf("parseDecimal(0) = %d, %v; want 0, true (TOP n 0)", n, ok)
	}
}

func TestWriteDotStuffed(t *testing.T) {
	tests := []struct {
		name, msg string
		lines     int
		want      string
	}{
		{"whole", "A: b\r\n\r\nx\r\n", -1, "A: b\r\n\r\nx\r\n.\r\n"},
		{"dots", "A: b\r\n\r\n.x\r\n.\r\n", -1, "A: b\r\n\r\n..x\r\n..\r\n.\r\n"},
		{"lf to crlf", "A: b\n\nx", -1, "A: b\r\n\r\nx\r\n.\r\n"},
		{"top 0", "A: b\r\n\r\nx\r\ny\r\n", 0, "A: b\r\n\r\n.\r\n"},
		{"top 1", "A: b\r\n\r\nx\r\ny\r\n", 1, "A: b\r\n\r\nx\r\n.\r\n"},
		{"top beyond", "A: b\r\n\r\nx\r\n", 5, "A: b\r\n\r\nx\r\n.\r\n"},
		{"header only", "A: b\r\n", 0, "A: b\r\n.\r\n"},
		{"empty", "", -1, ".\r\n"},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		w := bufio.NewWriter(&b)
		if err := writeDotStuffed(w, []byte(tt.msg), tt.lines); err != nil {
			t.Fatal(err)
		}
		_ = w.Flush()
		if b.String() != tt.want {
			t.Errorf("%s: wrote %q, want %q", tt.name, b.String(), tt.want)
		}
	}
}

// FuzzPOP3Command checks that the parser never panics and that what it
// accepts is a well-formed command that parses the same when re-joined.
func FuzzPOP3Command(f *testing.F) {
	f.Add([]byte("RETR 1"))
	f.Fuzz(func(t *testing.T, line []byte) {
		cmd, err := parsePOP3Command(line)
		if err != nil {
			return
		}
		if len(cmd.name) < 3 || len(cmd.name) > 4 || strings.ToUpper(cmd.name) != cmd.name {
			t.Fatalf("keyword %q", cmd.name)
		}
		if len(cmd.args) > maxPOP3Args {
			t.Fatalf("%d arguments", len(cmd.args))
		}
		for _, a := range cmd.args {
			if a == "" || strings.ContainsAny(a, " \r\n\x00") {
				t.Fatalf("argument %q", a)
			}
		}
		again, err := parsePOP3Command([]byte(strings.Join(append([]string{cmd.name}, cmd.args...), " ")))
		if err != nil || again.name != cmd.name || !slices.Equal(again.args, cmd.args) {
			t.Fatalf("re-joined %q %q parses as %q %q, %v", cmd.name, cmd.args, again.name, again.args, err)
		}
		if len(cmd.args) > 0 {
			if n, ok := parseMsgNum(cmd.args[0]); ok && n < 1 {
				t.Fatalf("message number %d", n)
			}
		}
	})
}

// FuzzDotStuffing checks that a client undoing the dot-stuffing (net/textproto)
// gets the message back, with LF line ends.
func FuzzDotStuffing(f *testing.F) {
	f.Add([]byte("Subject: a\r\n\r\n.x\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		if bytes.Contains(bytes.ReplaceAll(msg, []byte("\r\n"), nil), []byte("\r")) {
			t.Skip("a CR outside CRLF has no canonical form on the wire")
		}
		var b bytes.Buffer
		w := bufio.NewWriter(&b)
		if err := writeDotStuffed(w, msg, -1); err != nil {
			t.Fatal(err)
		}
		_ = w.Flush()
		got, err := textproto.NewReader(bufio.NewReader(&b)).ReadDotBytes()
		if err != nil {
			t.Fatalf("reading back: %v", err)
		}
		want := string(bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n")))
		if want != "" && !strings.HasSuffix(want, "\n") {
			want += "\n"
		}
		if string(got) != want {
			t.Fatalf("read back %q, want %q", got, want)
		}
	})
}

// FuzzPOP3Session feeds arbitrary client input to a POP3 session (the
// seeds log in, so the TRANSACTION state is covered) and checks that it
// ends without panicking and answers only in CRLF-terminated lines.
func FuzzPOP3Session(f *testing.F) {
	login := "AUTH XOAUTH2 " + ir(testUser, goodToken) + "\r\n"
	f.Add([]byte("CAPA\r\nAUTH\r\nUSER a\r\nQUIT\r\n"))
	f.Add([]byte(login + "STAT\r\nLIST\r\nUIDL 1\r\nRETR 1\r\nTOP 1 0\r\nDELE 1\r\nRSET\r\nNOOP\r\nQUIT\r\n"))
	f.Add([]byte("AUTH XOAUTH2\r\n" + ir(testUser, "bad") + "\r\n\r\nSTAT\r\n"))
	f.Add([]byte(login + "DELE 1\r\nDELE 1\r\nRETR 1\r\nLIST 9\r\nTOP 1 x\r\nQUIT\r\n"))
	s := MustStart(f, Options{Validate: validate})
	s.AddUser(testUser)
	p, err := s.StartPOP3(POP3Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = p.Close() })
	f.Fuzz(func(t *testing.T, input []byte) {
		if st, err := s.user(testUser).Status("INBOX", &imap.StatusOptions{NumMessages: true}); err == nil && *st.NumMessages == 0 {
			_ = s.Append(testUser, "INBOX", []byte(pop3Msg2))
		}
		conn := &scriptConn{in: bytes.NewReader(input)}
		c := &pop3Conn{p: p, conn: conn, r: bufio.NewReaderSize(conn, maxPOP3AuthLine), w: bufio.NewWriter(conn)}
		c.run()
		c.end()
		out := conn.out.Bytes()
		if len(out) > 0 && !bytes.HasSuffix(out, []byte("\r\n")) {
			t.Fatalf("output does not end in CRLF: %q", out)
		}
		for _, l := range bytes.SplitAfter(out, []byte("\r\n")) {
			if bytes.Count(l, []byte("\n")) > 1 || bytes.Contains(bytes.TrimSuffix(l, []byte("\r\n")), []byte("\n")) {
				t.Fatalf("bare LF in the output line %q", l)
			}
		}
	})
}

// scriptConn is a net.Conn that reads a fixed script, then EOF, and
// records what is written.
type scriptConn struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func (c *scriptConn) Read(p []byte) (int, error)       { return c.in.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *scriptConn) Close() error                     { return nil }
func (c *scriptConn) LocalAddr() net.Addr              { return pipeAddr{} }
func (c *scriptConn) RemoteAddr() net.Addr             { return pipeAddr{} }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }
