package tokens

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
	"testing"
)

// TestWriteFailedHints checks that a refused write of the store says what
// to do, and keeps the cause in the chain.
func TestWriteFailedHints(t *testing.T) {
	tests := []struct {
		err  error
		hint string // "" : returned as is
	}{
		{&fs.PathError{Op: "open", Path: "tokens.json.lock", Err: syscall.EROFS}, "read-only: make it writable"},
		{fmt.Errorf("writing token store x: %w", &fs.PathError{Op: "write", Path: "tokens.json.tmp", Err: syscall.ENOSPC}), "full: free some space"},
		{&fs.PathError{Op: "open", Path: "tokens.json.tmp", Err: fs.ErrPermission}, "give the user it runs as write access"},
		{errors.New("token store lock is held by another process"), ""},
	}
	for _, tt := range tests {
		got := writeFailed(tt.err)
		if !errors.Is(got, tt.err) {
			t.Errorf("writeFailed(%v) lost the cause: %v", tt.err, got)
		}
		if tt.hint == "" {
			if got != tt.err {
				t.Errorf("writeFailed(%v) = %v, want it unchanged", tt.err, got)
			}
			continue
		}
		if !strings.Contains(got.Error(), tt.hint) || !strings.Contains(got.Error(), "the stored tokens are unchanged") {
			t.Errorf("writeFailed(%v) = %q, want the hint %q", tt.err, got, tt.hint)
		}
	}
}
