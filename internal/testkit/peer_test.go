package testkit

import (
	"io"
	"testing"
	"time"
)

func TestPeerWritesAnswersWhateverItIsSentThenHangsUp(t *testing.T) {
	c := PeerWrites([]byte("+OK ready\r\n"))
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	// A write does not block although the peer never answers it.
	if _, err := c.Write([]byte("AUTH XOAUTH2\r\n")); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "+OK ready\r\n" {
		t.Fatalf("read %q, %v; want the peer's bytes and EOF", got, err)
	}
}
