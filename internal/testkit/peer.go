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
