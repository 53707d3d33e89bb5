package smtpfront

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	"github.com/xoauthd/xoauthd/proxy"
)

// go-smtp runs the STARTTLS handshake itself and, when it fails, answers
// "550 5.0.0 Handshake error" and keeps the error to itself. handshakeWatch
// sees the handshake from below (clientConn is the connection under
// go-smtp's TLS) and rebuilds the cause, so that the failure is logged by
// proxy.LogHandshakeFailure like a failed handshake on every other
// listener: the alert the server sent (with the versions the client
// offered), a first record that is not TLS, or the read error.

// Record layer facts (RFC 5246 §6.2.1, §7.2).
const (
	recordHeaderLen     = 5
	recordTypeAlert     = 0x15
	recordTypeHandshake = 0x16
	alertBodyLen        = 2
)

// replyHandshakeError starts go-smtp's reply to a failed STARTTLS handshake.
const replyHandshakeError = "550 "

// handshakeWatch collects what is known of one STARTTLS handshake. It is
// used on the connection's goroutine only (go-smtp's reads and writes, and
// the handshake's GetConfigForClient, all run there).
type handshakeWatch struct {
	versions  []uint16       // what the ClientHello offered; set by hello
	alert     tls.AlertError // the alert the server sent; valid when sentAlert
	sentAlert bool
	first     int   // the first byte the client sent, -1 before one came
	readErr   error // the first read error during the handshake
}

func newHandshakeWatch() *handshakeWatch { return &handshakeWatch{first: -1} }

// hello notes the versions the client offered.
func (w *handshakeWatch) hello(info *tls.ClientHelloInfo) {
	w.versions = info.SupportedVersions
}

// read notes what the client sent during the handshake.
func (w *handshakeWatch) read(b []byte, err error) {
	if w.first < 0 && len(b) > 0 {
		w.first = int(b[0])
	}
	if err != nil && w.readErr == nil {
		w.readErr = err
	}
}

// wrote notes an alert among the records the server wrote. Alerts before
// the keys are set are plaintext; a later one is encrypted and not seen.
func (w *handshakeWatch) wrote(b []byte) {
	for len(b) >= recordHeaderLen {
		n := recordHeaderLen + (int(b[3])<<8 | int(b[4]))
		if b[0] == recordTypeAlert && n == recordHeaderLen+alertBodyLen && len(b) >= n {
			w.alert, w.sentAlert = tls.AlertError(b[recordHeaderLen+1]), true
		}
		if n > len(b) {
			return
		}
		b = b[n:]
	}
}

// err is the best account of why the handshake failed.
func (w *handshakeWatch) err() error {
	switch {
	case w.sentAlert && len(w.versions) > 0:
		return fmt.Errorf("%w; the client offered %s", w.alert, versionNames(w.versions))
	case w.sentAlert:
		return w.alert
	case w.first >= 0 && w.first != recordTypeHandshake:
		return errors.New("tls: first record does not look like a TLS handshake")
	case w.readErr != nil:
		return w.readErr
	}
	return errors.New("tls: handshake failed")
}

// versionNames writes TLS versions as "TLS 1.0, TLS 1.1".
func versionNames(vs []uint16) string {
	names := make([]string, len(vs))
	for i, v := range vs {
		names[i] = tls.VersionName(v)
	}
	return strings.Join(names, ", ")
}

// watchHandshake is called with what go-smtp writes while its STARTTLS
// handshake runs: records of the handshake, or its failure reply, which
// ends the watch and logs the failure.
func (c *clientConn) watchHandshake(b []byte) {
	if !bytes.HasPrefix(b, []byte(replyHandshakeError)) {
		c.hs.wrote(b)
		return
	}
	proxy.LogHandshakeFailure(c.log, c.hs.err())
	c.hs = nil
}
