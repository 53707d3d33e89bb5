package testkit

import (
	"errors"
	"io"
	"net"
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
	// A client that answers the last line is not refused.
	if _, err := c.Write([]byte("\r\n")); err != nil {
		t.Fatalf("write after the peer's last byte: %v", err)
	}
	c.Close()
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after Close = %v, want net.ErrClosed", err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after Close = %v, want net.ErrClosed", err)
	}
}
