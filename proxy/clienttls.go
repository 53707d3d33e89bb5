package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
)

// ServerHandshake runs the server side of a TLS handshake with a local client
// on conn (STARTTLS/STLS, or the first bytes of an implicit-TLS port) and
// logs the outcome on log. The caller bounds it with conn's deadline. It
// returns nil and the error when the handshake did not complete.
func ServerHandshake(log *slog.Logger, conn net.Conn, cfg *tls.Config) (*tls.Conn, error) {
	tc := tls.Server(conn, cfg)
	if err := tc.Handshake(); err != nil {
		LogHandshakeFailure(log, err)
		return nil, err
	}
	st := tc.ConnectionState()
	log.Debug("TLS started", "version", tls.VersionName(st.Version), "cipher", tls.CipherSuiteName(st.CipherSuite))
	return tc, nil
}

// LogHandshakeFailure logs a failed handshake with a local client: a client
// that hung up or ran out of time at DEBUG, anything else (a client that does
// not trust the certificate, or speaks plaintext to a TLS port) at INFO.
func LogHandshakeFailure(log *slog.Logger, err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.Is(err, context.Canceled) {
		log.Debug("TLS handshake with the client did not complete", "err", err)
		return
	}
	log.Info("TLS handshake with the client failed (does the client trust the certificate, and use TLS on this port?)", "err", err)
}

// DiscardBeforeTLS drops what a client sent after its STARTTLS (or STLS)
// command and before the handshake: it came in plaintext and must never be
// taken as sent over TLS (command injection, CVE-2011-0411). It logs how
// much it dropped.
func DiscardBeforeTLS(log *slog.Logger, br *bufio.Reader, command string) {
	if n := br.Buffered(); n > 0 {
		_, _ = br.Discard(n)
		log.Warn("discarded what the client sent after "+command+" before the TLS handshake (a client bug or a command injection attempt)",
			"bytes", n)
	}
}
