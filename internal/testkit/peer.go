package testkit

import (
	"io"
	"net"
	"testing"
)

// PeerWrites returns one end of an in-memory connection whose other end
// reads everything written to it, writes data and hangs up: an upstream
// that answers with fixed (or fuzzed) bytes whatever it is sent.
func PeerWrites(data []byte) net.Conn {
	client, server := net.Pipe()
	go func() {
		go func() { _, _ = io.Copy(io.Discard, server) }()
		_, _ = server.Write(data)
		_ = server.Close()
	}()
	return client
}

// ServeOne listens on a loopback port, hands the first connection to
// serve (in a goroutine of its own) and closes the connection after serve
// returns. The listener closes when the test ends. It returns the address
// to dial.
func ServeOne(t testing.TB, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		serve(c)
	}()
	return ln.Addr().String()
}

// TCPPair returns the two ends of a loopback TCP connection: server, the
// accepted end, and client, the dialled one. Both close when the test ends.
func TCPPair(t testing.TB) (server, client *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		c.Close()
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return s.(*net.TCPConn), c.(*net.TCPConn)
}
