package testkit

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// PeerWrites returns one end of an in-memory connection to an upstream
// that answers with fixed (or fuzzed) bytes whatever it is sent: reads
// return data, then io.EOF (the upstream has nothing more to say); writes
// are accepted and dropped, also after data is read, so that a client
// that answers the last line still reads what follows it. After Close,
// reads and writes fail with net.ErrClosed. Deadlines are accepted and
// never expire: no read or write ever waits.
func PeerWrites(data []byte) net.Conn {
	return &peerConn{data: data}
}

// peerConn is the client end of PeerWrites.
type peerConn struct {
	mu     sync.Mutex
	data   []byte // still to be read
	closed bool
}

func (c *peerConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return 0, net.ErrClosed
	case len(c.data) == 0:
		return 0, io.EOF
	}
	n := copy(p, c.data)
	c.data = c.data[n:]
	return n, nil
}

func (c *peerConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return len(p), nil
}

func (c *peerConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *peerConn) LocalAddr() net.Addr              { return peerAddr{} }
func (c *peerConn) RemoteAddr() net.Addr             { return peerAddr{} }
func (c *peerConn) SetDeadline(time.Time) error      { return nil }
func (c *peerConn) SetReadDeadline(time.Time) error  { return nil }
func (c *peerConn) SetWriteDeadline(time.Time) error { return nil }

// peerAddr is the address of both ends of a PeerWrites connection.
type peerAddr struct{}

func (peerAddr) Network() string { return "peer" }
func (peerAddr) String() string  { return "peer" }

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
