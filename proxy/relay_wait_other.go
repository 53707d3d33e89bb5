//go:build !unix

package proxy

import "net"

// waitReadable returns at once where there is no peek without reading: the
// following Read then waits holding its buffer, as an idle direction did
// before this optimisation.
func waitReadable(*net.TCPConn) error { return nil }
