package testupstream

import (
	"os"
	"strconv"
	"syscall"
	"testing"
)

func TestParseStat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in    string
		state byte
		pgrp  int
		ok    bool
	}{
		{"123 (dovecot) S 1 123 123 0 -1", 'S', 123, true},
		{"7 (imap-login) Z 6 5 5", 'Z', 5, true},
		{"9 (weird ) name) R 1 42 42", 'R', 42, true},
		{"9 (a b c) D 1 7", 'D', 7, true},
		{"", 0, 0, false},
		{"9 no-paren S 1 2", 0, 0, false},
		{"9 (x) S 1", 0, 0, false},
		{"9 (x) SS 1 2", 0, 0, false},
		{"9 (x) S 1 notanumber", 0, 0, false},
		{"9 (x) S 1 -4", 0, 0, false},
	}
	for _, tt := range tests {
		state, pgrp, ok := parseStat([]byte(tt.in))
		if state != tt.state || pgrp != tt.pgrp || ok != tt.ok {
			t.Errorf("parseStat(%q) = %q, %d, %v; want %q, %d, %v", tt.in, state, pgrp, ok, tt.state, tt.pgrp, tt.ok)
		}
	}
}

func TestReadStatSelf(t *testing.T) {
	t.Parallel()
	state, pgrp, ok := readStat("/proc/" + strconv.Itoa(os.Getpid()) + "/stat")
	if !ok || state == 'Z' || pgrp != syscall.Getpgrp() {
		t.Fatalf("readStat(self) = %q, %d, %v; want pgrp %d", state, pgrp, ok, syscall.Getpgrp())
	}
	if _, _, ok := readStat("/proc/does-not-exist/stat"); ok {
		t.Error("readStat of a missing file succeeded")
	}
}

func FuzzParseStat(f *testing.F) {
	for _, s := range []string{"1 (init) S 0 1 1", "9 (a) b) Z 1 2", ")", "(", "1 () R 0 -1"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		state, pgrp, ok := parseStat(b)
		if !ok && (state != 0 || pgrp != 0) {
			t.Fatalf("not ok but returned %q, %d", state, pgrp)
		}
		if ok && pgrp < 0 {
			t.Fatalf("negative process group %d", pgrp)
		}
	})
}
