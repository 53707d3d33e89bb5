//go:build unix

package proxy

import (
	"net"
	"syscall"
)

// waitReadable blocks until c has data (or end of stream, or an error)
// without reading it, so an idle direction holds no copy buffer: it peeks
// one byte with MSG_PEEK|MSG_DONTWAIT whenever the poller says readable.
func waitReadable(c *net.TCPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var one [1]byte
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		_, _, e := syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if e == syscall.EAGAIN || e == syscall.EINTR {
			return false
		}
		perr = e
		return true
	})
	if err != nil {
		return err
	}
	return perr
}
