package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// quickTimeout bounds the end-to-end quick run in the test.
const quickTimeout = 90 * time.Second

// dovecotPresent reports whether the Dovecot rig can run here.
func dovecotPresent() bool {
	if os.Geteuid() != 0 {
		return false
	}
	if _, err := exec.LookPath("dovecot"); err == nil {
		return true
	}
	_, err := os.Stat("/usr/sbin/dovecot")
	return err == nil
}

// TestQuickRun runs `bench --quick --json` end to end, so the benchmark
// cannot rot: every scenario must produce figures and none may fail.
func TestQuickRun(t *testing.T) {
	if testing.Short() {
		t.Skip("the quick benchmark starts Dovecot and builds xoauthd")
	}
	if !dovecotPresent() {
		t.Skip("Dovecot is not installed or the test does not run as root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), quickTimeout)
	defer cancel()
	var out, errb bytes.Buffer
	if code := run(ctx, []string{"--quick", "--json"}, &out, &errb); code != exitOK {
		t.Fatalf("bench --quick exited %d:\n%s\n%s", code, errb.String(), out.String())
	}
	var rep report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("decoding the JSON report: %v\n%s", err, out.String())
	}
	seen := map[string]bool{}
	for _, r := range rep.Results {
		seen[r.Scenario] = true
		if r.Ratio != nil && (*r.Ratio <= 0 || r.Through <= 0) {
			t.Errorf("%s %s: through %v, ratio %v", r.Scenario, r.Metric, r.Through, *r.Ratio)
		}
	}
	for _, sc := range scenarios {
		if !seen[sc.name] {
			t.Errorf("scenario %s produced no figures", sc.name)
		}
	}
}

func TestParseOptions(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
		check   func(options) bool
	}{
		{"defaults", nil, "", func(o options) bool { return o.upstream == upstreamDovecot && !o.quick && len(o.only) == 0 }},
		{"quick inproc", []string{"--quick", "--upstream=inproc"}, "", func(o options) bool { return o.quick && o.upstream == upstreamInproc }},
		{"only list", []string{"--only", "fetch, login"}, "", func(o options) bool { return len(o.only) == 2 && o.only[1] == "login" }},
		{"unknown scenario", []string{"--only", "imap"}, "unknown scenario", nil},
		{"unknown upstream", []string{"--upstream=gmail"}, "want dovecot or inproc", nil},
		{"stray argument", []string{"fetch"}, "unexpected arguments", nil},
		{"negative rounds", []string{"--rounds=-1"}, "must not be negative", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseOptions(tt.args, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !tt.check(o) {
				t.Fatalf("options %+v, error %v", o, err)
			}
		})
	}
}

func TestRunUsageErrors(t *testing.T) {
	var errb bytes.Buffer
	if code := run(context.Background(), []string{"--only", "nope"}, io.Discard, &errb); code != exitUsage {
		t.Fatalf("exit %d, want %d", code, exitUsage)
	}
	if !strings.Contains(errb.String(), "unknown scenario") {
		t.Fatalf("stderr %q does not name the problem", errb.String())
	}
}

func TestSizesFor(t *testing.T) {
	sz := sizesFor(options{quick: true, rounds: 2, sessions: 7})
	if sz.Rounds != 2 || sz.Sessions != 7 || sz.MailMsgs != quickSizes.MailMsgs {
		t.Fatalf("quick sizes with overrides: %+v", sz)
	}
	if full := sizesFor(options{}); full.Sessions != 10000 || full.MailMsgs != 200 || full.MailMsgSize != 1<<20 {
		t.Fatalf("full sizes do not match the issue: %+v", full)
	}
}

func TestPercentileAndMedian(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	tests := []struct {
		p    float64
		want time.Duration
	}{{50, 5}, {99, 10}, {100, 10}, {10, 1}, {1, 1}}
	for _, tt := range tests {
		if got := percentile(ds, tt.p); got != tt.want {
			t.Errorf("p%v = %v, want %v", tt.p, got, tt.want)
		}
	}
	if percentile(nil, 50) != 0 {
		t.Error("percentile of nothing is not 0")
	}
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median odd = %v", m)
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("median even = %v", m)
	}
	if median(nil) != 0 {
		t.Error("median of nothing is not 0")
	}
}

func TestIMAPLiteral(t *testing.T) {
	tests := []struct {
		line string
		want int64
	}{
		{"* 1 FETCH (BODY[] {1048576}\r\n", 1048576},
		{"* 1 FETCH (BODY[] {0}\r\n", 0},
		{"b1 OK done\r\n", -1},
		{"* OK {abc}\r\n", -1},
		{"* OK {-1}\r\n", -1},
		{"* OK {99999999999}\r\n", -1},
		{"}\r\n", -1},
		{"{}\r\n", -1},
	}
	for _, tt := range tests {
		if got := imapLiteral([]byte(tt.line)); got != tt.want {
			t.Errorf("imapLiteral(%q) = %d, want %d", tt.line, got, tt.want)
		}
	}
}

// pipeConn returns a wireConn reading server from a goroutine-fed pipe.
func pipeConn(t *testing.T, server string) *wireConn {
	t.Helper()
	c, s := net.Pipe()
	t.Cleanup(func() { c.Close(); s.Close() })
	go func() {
		// Drain what the client sends, feed the canned server side.
		go io.Copy(io.Discard, s)
		io.WriteString(s, server)
		s.Close()
	}()
	return &wireConn{c: c, r: bufio.NewReaderSize(c, 16)}
}

func TestIMAPReply(t *testing.T) {
	lit := strings.Repeat("x", 100)
	tests := []struct {
		name     string
		server   string
		wantLits int64
		wantErr  bool
	}{
		{"literals then OK", "* 1 FETCH (BODY[] {100}\r\n" + lit + ")\r\n* 2 FETCH (BODY[] {100}\r\n" + lit + ")\r\nb1 OK FETCH done\r\n", 200, false},
		{"long untagged line", "* " + strings.Repeat("y", 200) + "\r\nb1 OK\r\n", 0, false},
		{"NO", "b1 NO [AUTHENTICATIONFAILED] no\r\n", 0, true},
		{"eof in literal", "* 1 FETCH (BODY[] {100}\r\nshort", 0, true},
		{"eof before tag", "* OK\r\n", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := pipeConn(t, tt.server)
			n, err := w.imapCmd("FETCH 1:2 BODY.PEEK[]", make([]byte, 7))
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && n != tt.wantLits {
				t.Fatalf("literal bytes %d, want %d", n, tt.wantLits)
			}
		})
	}
}

func TestPOP3Multiline(t *testing.T) {
	body := "line one\r\n..stuffed\r\nlast\r\n"
	tests := []struct {
		name    string
		server  string
		want    int64
		wantErr bool
	}{
		{"body", "+OK 3 lines\r\n" + body + ".\r\n", int64(len(body) + 3), false},
		{"empty body", "+OK\r\n.\r\n", 3, false},
		{"dot line inside", "+OK\r\n..\r\nx\r\n.\r\n", 10, false},
		{"no terminator", "+OK\r\n" + body, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := pipeConn(t, tt.server)
			if err := w.pop3Cmd("RETR 1", false); err != nil {
				t.Fatal(err)
			}
			n, err := w.pop3Multiline()
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && n != tt.want {
				t.Fatalf("consumed %d bytes, want %d", n, tt.want)
			}
		})
	}
}

func TestFindTerminatorAcrossChunks(t *testing.T) {
	stream := "+OK\r\nabc\r\n.\r\n"
	body := []byte(stream[len("+OK\r\n"):])
	// Every way of cutting the body into two chunks finds the end.
	for cut := 0; cut <= len(body); cut++ {
		tail := []byte("\r\n")
		a, b := body[:cut], body[cut:]
		if end := findTerminator(tail, a); end >= 0 {
			if end != len(body) || cut != len(body) {
				t.Fatalf("cut %d: found the end at %d in the first chunk", cut, end)
			}
			continue
		}
		tail = streamTail(tail, a)
		if end := findTerminator(tail, b); end != len(b) {
			t.Fatalf("cut %d: end at %d of the second chunk, want %d", cut, end, len(b))
		}
	}
}

func TestSMTPReply(t *testing.T) {
	tests := []struct {
		name    string
		server  string
		want    string
		wantErr bool
	}{
		{"multi-line", "250-first\r\n250-second\r\n250 last\r\n", "250", false},
		{"wrong code", "535 5.7.8 no\r\n", "235", true},
		{"short line", "25\r\n", "250", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := pipeConn(t, tt.server).smtpReply(tt.want)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, errProtocol) {
				t.Fatalf("error %v is not errProtocol", err)
			}
		})
	}
}

func TestParseStatCPU(t *testing.T) {
	line := "1234 (xo auth) d) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 1000 200"
	got, err := parseStatCPU([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if want := 3 * time.Second; got != want {
		t.Fatalf("cpu %v, want %v", got, want)
	}
	if _, err := parseStatCPU([]byte("1234 (x) S 1")); err == nil {
		t.Fatal("short stat line accepted")
	}
	if _, err := parseStatCPU([]byte("no name")); err == nil {
		t.Fatal("stat line without a command name accepted")
	}
}

func TestMessageShape(t *testing.T) {
	body := messageBody(1 << 20)
	if len(body) > 1<<20 || len(body) < 1<<20-2*(lineChars+2) {
		t.Fatalf("body of %d bytes for 1 MiB", len(body))
	}
	if !bytes.Equal(body, messageBody(1<<20)) {
		t.Fatal("bodies differ between calls")
	}
	for _, line := range bytes.Split(bytes.TrimSuffix(body, []byte("\r\n")), []byte("\r\n")) {
		if len(line) != lineChars || line[0] == '.' {
			t.Fatalf("body line %q", line)
		}
	}
	msg := message("x", body)
	if !bytes.HasSuffix(msg, []byte("\r\n")) || !bytes.Contains(msg, []byte("\r\n\r\n")) {
		t.Fatal("message has no header/body separator or no final CRLF")
	}
}

func TestReportText(t *testing.T) {
	r := &report{
		Machine: machine{CPUs: 2, MemMiB: 1024, Go: "go1.x", OS: "linux/amd64", Upstream: "dovecot"},
		Options: reportOpts{Rounds: 3},
		Results: []result{
			compare("fetch", "FETCH 1 session", "MB/s", 200, 190, targetThroughputRatio),
			compare("fetch", "FETCH 8 sessions", "MB/s", 200, 100, targetThroughputRatio),
			single("sessions", "failed connects", "connects", 0, "= 0", atMost(0, 0)),
		},
		Failures: []failure{{Scenario: "smtp", Error: "boom"}},
	}
	var b bytes.Buffer
	if err := r.writeText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"0.95", "0.50", "yes", "NO", "FAILED smtp: boom", "2 CPUs"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	if err := r.writeJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || len(back.Results) != 3 || *back.Results[1].Met {
		t.Fatalf("JSON round trip: %v %+v", err, back)
	}
}

// FuzzIMAPReply feeds arbitrary server output to the IMAP reply reader:
// it must end (with or without an error) and never panic.
func FuzzIMAPReply(f *testing.F) {
	f.Add([]byte("* 1 FETCH (BODY[] {3}\r\nabc)\r\nb1 OK\r\n"))
	f.Add([]byte("* OK {5}\r\nab"))
	f.Add([]byte("b1 BAD\r\n"))
	f.Add([]byte("{999999999}\r\n"))
	f.Fuzz(func(t *testing.T, server []byte) {
		w := pipeConn(t, string(server))
		_, _ = w.imapCmd("NOOP", make([]byte, 8))
	})
}

// FuzzPOP3Multiline feeds arbitrary bodies to the terminator scanner.
func FuzzPOP3Multiline(f *testing.F) {
	f.Add([]byte("+OK\r\nabc\r\n.\r\n"))
	f.Add([]byte("+OK\r\n.\r\n"))
	f.Add([]byte("+OK\r\n..\r\n\r\n.\r"))
	f.Fuzz(func(t *testing.T, server []byte) {
		w := pipeConn(t, "+OK\r\n"+string(server))
		if err := w.pop3Status(false); err != nil {
			t.Fatal(err)
		}
		n, err := w.pop3Multiline()
		if err == nil {
			// The consumed bytes must end with the terminator.
			all := append([]byte("\r\n"), server...)
			if n > int64(len(server)) || !bytes.HasSuffix(all[:n+2], pop3Terminator) {
				t.Fatalf("consumed %d bytes of %q without ending at a terminator", n, server)
			}
		}
	})
}
