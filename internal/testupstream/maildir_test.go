package testupstream

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestMaildirDeliver(t *testing.T) {
	t.Parallel()
	md := &maildir{root: t.TempDir(), uid: os.Getuid(), gid: os.Getgid()}
	msgs := [][]byte{crlf("Subject: 1", "", "a"), crlf("Subject: 2", "", "b")}
	for _, m := range msgs {
		if err := md.deliver("Mixed.Case@Example.test", m); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(md.root, "mixed.case@example.test")
	for _, sub := range []string{"cur", "tmp"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil || len(entries) != 0 {
			t.Errorf("%s/ = %v (%v), want empty", sub, entries, err)
		}
	}
	files, err := filepath.Glob(filepath.Join(dir, "new", "*"))
	if err != nil || len(files) != len(msgs) {
		t.Fatalf("new/ = %v (%v), want %d files", files, err, len(msgs))
	}
	found := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if bytes.Equal(data, m) {
				found++
			}
		}
	}
	if found != len(msgs) {
		t.Errorf("found %d of %d messages byte for byte", found, len(msgs))
	}
}

func TestMaildirRejectsBadUsers(t *testing.T) {
	t.Parallel()
	md := &maildir{root: t.TempDir(), uid: os.Getuid(), gid: os.Getgid()}
	for _, user := range []string{"", ".", "..", "a/b", "../x", "nul\x00byte"} {
		if err := md.deliver(user, []byte("x\r\n")); err == nil {
			t.Errorf("deliver(%q) succeeded, want an error", user)
		}
	}
	entries, err := os.ReadDir(md.root)
	if err != nil || len(entries) != 0 {
		t.Errorf("root = %v (%v), want nothing created", entries, err)
	}
}
