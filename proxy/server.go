package proxy

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
)

// Handler serves one protocol on accepted connections (each front implements it).
type Handler interface {
	// ServeConn runs a whole client session and returns when it has ended.
	// The caller closes c afterwards.
	ServeConn(ctx context.Context, c *Conn)
	// Refuse writes the protocol's "too busy" reply to a connection accepted
	// over the listener's limit; the caller closes it right after.
	Refuse(c net.Conn)
}

// Conn is an accepted client connection with its id and logger.
type Conn struct {
	net.Conn
	ID     uint64       // monotonic per process, set at accept
	Remote netip.Addr   // client address (unmapped), set at accept
	Log    *slog.Logger // carries cid, proto, remote
}
