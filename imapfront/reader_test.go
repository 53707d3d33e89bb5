package imapfront

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/xoauthd/xoauthd/proxy"
)

func newCmdReader(r io.Reader) *cmdReader {
	return &cmdReader{br: bufio.NewReaderSize(r, maxLineLength), cont: func() error { return nil }}
}

func atom(s string) arg    { return arg{kind: argAtom, s: s} }
func quoted(s string) arg  { return arg{kind: argQuoted, s: s} }
func literal(s string) arg { return arg{kind: argLiteral, s: s} }

var (
	lp = arg{kind: argOpen}
	rp = arg{kind: argClose}
)

// TestReadCommands parses commands fed one byte at a time, so that every
// line and literal arrives split.
func TestReadCommands(t *testing.T) {
	tests := []struct {
		in   string
		want command
	}{
		{"a NOOP\r\n", command{tag: "a", name: "NOOP"}},
		{"A1 login alice secret\r\n", command{tag: "A1", name: "LOGIN", args: []arg{atom("alice"), atom("secret")}}},
		{`a LOGIN "a\"b" "c\\d"` + "\r\n", command{tag: "a", name: "LOGIN", args: []arg{quoted(`a"b`), quoted(`c\d`)}}},
		{"a LOGIN {3}\r\nx y {2+}\r\n\r\n\r\n", command{tag: "a", name: "LOGIN", args: []arg{literal("x y"), literal("\r\n")}}},
		{"a LOGIN {0}\r\n \"\"\r\n", command{tag: "a", name: "LOGIN", args: []arg{literal(""), quoted("")}}},
		{`a ID ("name" "x" "os" NIL)` + "\r\n", command{tag: "a", name: "ID",
			args: []arg{lp, quoted("name"), quoted("x"), quoted("os"), atom("NIL"), rp}}},
		{"a ID ({4+}\r\nname {1+}\r\nx)\r\n", command{tag: "a", name: "ID",
			args: []arg{lp, literal("name"), literal("x"), rp}}},
		{"a ID ()\r\n", command{tag: "a", name: "ID", args: []arg{lp, rp}}},
		{"a ID ((x) y)\r\n", command{tag: "a", name: "ID", args: []arg{lp, lp, atom("x"), rp, atom("y"), rp}}},
		{"a AUTHENTICATE PLAIN AGFsaWNlAHg=\r\n", command{tag: "a", name: "AUTHENTICATE", args: []arg{atom("PLAIN"), atom("AGFsaWNlAHg=")}}},
		{"t] X y]\n", command{tag: "t]", name: "X", args: []arg{atom("y]")}}},
	}
	for _, tt := range tests {
		r := newCmdReader(iotest.OneByteReader(strings.NewReader(tt.in)))
		got, err := r.read()
		if err != nil {
			t.Errorf("read(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(*got, tt.want) {
			t.Errorf("read(%q) = %+v, want %+v", tt.in, *got, tt.want)
		}
		if _, err := r.read(); err != io.EOF {
			t.Errorf("read(%q) left input: %v", tt.in, err)
		}
	}
}

func TestReadErrors(t *testing.T) {
	tests := []struct {
		in    string
		tag   string
		msg   string
		fatal bool
	}{
		{"\r\n", "", "Invalid tag", false},
		{"+a NOOP\r\n", "", "Invalid tag", false},
		{"a\r\n", "a", "Missing command", false},
		{"a  NOOP\r\n", "a", "Invalid command name", false},
		{"a NOOP  x\r\n", "a", "Invalid character", false},
		{"a ID (x\r\n", "a", "Unbalanced parentheses", false},
		{"a ID x)\r\n", "a", "Unbalanced parentheses", false},
		{"a ID (((x)))\r\n", "a", "Lists nested too deep", false},
		{"a X (\r\n", "a", "Unbalanced parentheses", false},
		{"a X {3\r\n", "a", "Invalid literal", false},
		{"a X {3} y\r\n", "a", "Invalid literal", false},
		{"a X {}\r\n", "a", "Invalid literal", false},
		{"a X {4097}\r\n", "a", "Literal too big", false},
		{"a X {4097+}\r\n", "a", "Literal too big", true},
		{"a X \"\x01{3+}\r\n", "a", "Unterminated quoted string", true},
		{"a X {2+}\r\nab{2}\r\n", "a", "Expected a space", false},
		{"a X {1+}\r\n\x00\r\n", "a", "NUL in literal", true},
		{"a X " + strings.Repeat("x", maxLineLength), "", "Line too long", true},
	}
	for _, tt := range tests {
		_, err := newCmdReader(strings.NewReader(tt.in)).read()
		var pe *parseError
		if !errors.As(err, &pe) {
			t.Errorf("read(%q) = %v, want a parse error", tt.in, err)
			continue
		}
		if pe.tag != tt.tag || pe.msg != tt.msg || pe.fatal != tt.fatal {
			t.Errorf("read(%q) = %+v, want tag %q msg %q fatal %v", tt.in, *pe, tt.tag, tt.msg, tt.fatal)
		}
	}
}

// endless yields b forever and counts what was read.
type endless struct {
	b byte
	n int64
}

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = e.b
	}
	e.n += int64(len(p))
	return len(p), nil
}

// TestReadBounded feeds endless input: the reader stops after a fixed
// amount, whatever it was fed.
func TestReadBounded(t *testing.T) {
	src := &endless{b: 'x'}
	if _, err := newCmdReader(src).read(); !errors.Is(err, errLineTooLong) {
		t.Fatalf("read = %v, want line too long", err)
	}
	if src.n > maxLineLength {
		t.Errorf("read %d bytes of an endless line, want at most %d", src.n, maxLineLength)
	}

	src = &endless{b: 'x'}
	r := newCmdReader(io.MultiReader(strings.NewReader("a LOGIN {4096+}\r\n"), src))
	if _, err := r.read(); !errors.Is(err, errLineTooLong) {
		t.Fatalf("read = %v, want line too long", err)
	}
	if limit := int64(maxLiteralSize + 2*maxLineLength); src.n > limit {
		t.Errorf("read %d bytes after a literal, want at most %d", src.n, limit)
	}
}

// TestSessionEndlessLine feeds a session an endless line over a synchronous
// pipe (a write returns only once the server has read it): the session
// must end after reading a bounded amount.
func TestSessionEndlessLine(t *testing.T) {
	server, client := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer server.Close()
		New(Options{Gateway: &proxy.Gateway{Auth: &fakeAuth{}, Tokens: &fakeTokens{}, Upstream: noUpstream}}).
			ServeConn(t.Context(), &proxy.Conn{Conn: server})
	}()
	go io.Copy(io.Discard, client) //nolint:errcheck // drains the replies
	src := &endless{b: 'x'}
	_ = client.SetDeadline(time.Now().Add(ioTimeout))
	n, _ := io.Copy(client, io.MultiReader(strings.NewReader("a NOOP\r\nb LOGIN "), io.LimitReader(src, 1<<30)))
	<-done
	client.Close()
	if n > 2*maxLineLength {
		t.Errorf("the session read %d bytes of one line before ending", n)
	}
}

func TestRedactLine(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a LOGIN alice secret", "a LOGIN ***"},
		{"a login {5}", "a login ***"},
		{"a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==", "a AUTHENTICATE PLAIN ***"},
		{"a AUTHENTICATE PLAIN", "a AUTHENTICATE PLAIN"},
		{"a SELECT INBOX", "a SELECT INBOX"},
		{"a NOOP", "a NOOP"},
		{"garbage", "garbage"},
	}
	for _, tt := range tests {
		if got := RedactLine(tt.in); got != tt.want {
			t.Errorf("RedactLine(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// encodeCommand writes cmd back in wire form, with LF line ends and
// synchronizing literals, so that no line is longer than the one parsed.
func encodeCommand(cmd *command) []byte {
	var b bytes.Buffer
	b.WriteString(cmd.tag + " " + cmd.name)
	for i, a := range cmd.args {
		if a.kind != argClose && (i == 0 || cmd.args[i-1].kind != argOpen) {
			b.WriteByte(' ')
		}
		switch a.kind {
		case argOpen:
			b.WriteByte('(')
		case argClose:
			b.WriteByte(')')
		case argAtom:
			b.WriteString(a.s)
		case argQuoted:
			b.WriteString(`"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(a.s) + `"`)
		case argLiteral:
			b.WriteString("{" + strconv.Itoa(len(a.s)) + "}\n" + a.s)
		}
	}
	b.WriteByte('\n')
	return b.Bytes()
}

// FuzzPreAuth feeds arbitrary bytes to the command reader: it must not
// panic, must keep its bounds, and what it parses must parse again the same
// after encoding. Seeds are in testdata/fuzz/FuzzPreAuth.
func FuzzPreAuth(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newCmdReader(bytes.NewReader(data))
		for range 64 {
			cmd, err := r.read()
			if err != nil {
				var pe *parseError
				if !errors.As(err, &pe) || pe.fatal {
					return
				}
				continue
			}
			checkCommand(t, cmd)
			again, err := newCmdReader(bytes.NewReader(encodeCommand(cmd))).read()
			if err != nil {
				t.Fatalf("%+v encoded as %q does not parse: %v", cmd, encodeCommand(cmd), err)
			}
			if !reflect.DeepEqual(cmd, again) {
				t.Fatalf("%+v parses back as %+v", cmd, again)
			}
		}
	})
}

// checkCommand checks the invariants of a parsed command.
func checkCommand(t *testing.T, cmd *command) {
	t.Helper()
	if cmd.tag == "" || strings.ContainsAny(cmd.tag, "+ (){%*\"\\\r\n") {
		t.Fatalf("invalid tag %q", cmd.tag)
	}
	if cmd.name == "" || strings.ContainsAny(cmd.name, "abcdefghijklmnopqrstuvwxyz") {
		t.Fatalf("invalid command name %q", cmd.name)
	}
	literals, depth := 0, 0
	for _, a := range cmd.args {
		switch a.kind {
		case argLiteral:
			literals++
			if len(a.s) > maxLiteralSize {
				t.Fatalf("literal of %d bytes", len(a.s))
			}
		case argOpen:
			depth++
		case argClose:
			depth--
		}
		if depth < 0 || depth > maxParenDepth {
			t.Fatalf("parentheses out of bounds in %+v", cmd.args)
		}
	}
	if literals > maxLiterals || depth != 0 {
		t.Fatalf("%d literals, depth %d in %+v", literals, depth, cmd.args)
	}
}

// FuzzSession runs the whole pre-auth dialogue on arbitrary client bytes
// with an authenticator that refuses everyone.
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"a CAPABILITY\r\nb ID NIL\r\nc LOGIN alice x\r\nd LOGOUT\r\n",
		"a AUTHENTICATE PLAIN\r\nAGFsaWNlAHg=\r\nb AUTHENTICATE LOGIN YWxpY2U=\r\neA==\r\n",
		"a NOOP\r\nb LOGIN {5}\r\nalice {1+}\r\nx\r\nc AUTHENTICATE PLAIN =\r\n",
		"a NOOP\r\nb AUTHENTICATE LOGIN\r\n*\r\nc ID (\"a\" NIL)\r\n",
	} {
		f.Add([]byte(s))
	}
	srv := New(Options{PreAuthTimeout: 2 * time.Second, Gateway: &proxy.Gateway{
		Auth: &fakeAuth{err: proxy.ErrBadCredentials}, Tokens: &fakeTokens{}, Upstream: noUpstream}})
	f.Fuzz(func(t *testing.T, data []byte) {
		server, client := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer server.Close()
			srv.ServeConn(t.Context(), &proxy.Conn{Conn: server})
		}()
		go io.Copy(io.Discard, client) //nolint:errcheck // drains the replies
		_, _ = client.Write(data)
		client.Close()
		<-done
	})
}

func BenchmarkReadCommand(b *testing.B) {
	for _, bc := range []struct{ name, in string }{
		{"login atoms", "a LOGIN alice secret\r\n"},
		{"login quoted", `a LOGIN "alice@example.com" "p\"ss w\\rd"` + "\r\n"},
		{"login literals", "a LOGIN {17+}\r\nalice@example.com {24+}\r\ncorrect horse battery st\r\n"},
		{"authenticate plain", "a AUTHENTICATE PLAIN " + b64("\x00alice@example.com\x00correct horse battery staple") + "\r\n"},
		{"id", `a ID ("name" "Thunderbird" "version" "128.0" "os" "Windows")` + "\r\n"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			src := strings.NewReader(bc.in)
			r := newCmdReader(src)
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.in)))
			for b.Loop() {
				src.Reset(bc.in)
				r.br.Reset(src)
				if _, err := r.read(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
