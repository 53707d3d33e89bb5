package testkit

import (
	"io"
	"net"
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
