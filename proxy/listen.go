package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
)

// listenKeepAlive is the TCP keep-alive period of accepted connections, so a
// client that vanished without a FIN (a laptop closed, a NAT dropping state)
// is noticed by the kernel while its session is idle.
const listenKeepAlive = 30 * time.Second

// Listen opens a TCP listener on addr (host:port) for a Server.
//
// The accept backlog is as large as the system allows: Go passes the
// kernel's maximum to listen(2) (on Linux the value of net.core.somaxconn,
// read once per process, 4096 by default since Linux 5.4; on BSD and macOS
// kern.ipc.somaxconn). To queue more connections during a burst, raise
// net.core.somaxconn (and net.ipv4.tcp_max_syn_backlog) and restart.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: listenKeepAlive}
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		hint := "check the listen address in the config"
		if errors.Is(err, syscall.EADDRINUSE) {
			hint = "another process (or another server entry) already listens there"
		} else if errors.Is(err, syscall.EACCES) {
			hint = "ports below 1024 need privileges: use a higher port"
		}
		return nil, fmt.Errorf("listening on %s: %w (hint: %s)", addr, err, hint)
	}
	return ln, nil
}

// isTemporaryAccept reports whether an accept error is worth retrying after
// a pause (resource exhaustion or a connection aborted before accept).
func isTemporaryAccept(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EAGAIN} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
