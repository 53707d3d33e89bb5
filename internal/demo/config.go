package demo

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/memupstream"
)

// Names in the written configuration.
const (
	// ConfigFileName is the configuration file in the demo's directory.
	ConfigFileName = "xoauthd.yaml"
	// providerName is the provider the demo account uses.
	providerName = "demo"
	// clientID is the application (client) ID of the demo app registration.
	clientID = "9d3f6c2e-5a1b-4e7d-8c0f-2b6a1e4d7c35"
)

// Listener is one local server of the demo.
type Listener struct {
	Protocol string // config.ProtoIMAP, config.ProtoPOP3 or config.ProtoSMTP
	Wanted   int    // the port asked for; 0 for any free port
	Addr     string // where the daemon listens (host:port); set by Start
}

// Moved reports whether the wanted port was taken and another one is used.
func (l Listener) Moved() bool {
	_, port, err := net.SplitHostPort(l.Addr)
	return err == nil && l.Wanted != 0 && port != strconv.Itoa(l.Wanted)
}

// plan returns where each listener should listen: the wanted port when it
// is free right now, else port 0 (any). anyPort ignores the wanted ports.
func plan(host string, listeners []Listener, anyPort bool) []string {
	addrs := make([]string, len(listeners))
	for i, l := range listeners {
		addrs[i] = net.JoinHostPort(host, "0")
		if l.Wanted == 0 || anyPort {
			continue
		}
		want := net.JoinHostPort(host, strconv.Itoa(l.Wanted))
		if ln, err := net.Listen("tcp", want); err == nil {
			_ = ln.Close()
			addrs[i] = want
		}
	}
	return addrs
}

// upstreams are the demo mail server's addresses.
type upstreams struct {
	imap, pop3, smtp string
	authority        string // the identity provider's base URL
	tenant           string
}

// writeConfig writes the demo configuration into dir and loads it.
// listen holds the listen address of each of listeners.
func writeConfig(dir string, up upstreams, listeners []Listener, listen []string, passwordHash string) (*config.Config, error) {
	var b strings.Builder
	b.WriteString("# Written by `xoauthd demo` for its built-in identity provider and mail\n" +
		"# server; removed when the demo stops. Relative paths are relative to this file.\n" +
		"log: {level: info}\n" +
		"store:\n  path: state/tokens.json\n  key: ${file:store.key}\n")
	fmt.Fprintf(&b, "providers:\n  %s:\n    type: microsoft\n    tenant: %s\n    client_id: %s\n    flow: authcode\n    authority: %s\n",
		providerName, up.tenant, clientID, strconv.Quote(up.authority))
	b.WriteString("servers:\n")
	for i, l := range listeners {
		upstream, mode := up.imap, "implicit"
		switch l.Protocol {
		case config.ProtoPOP3:
			upstream = up.pop3
		case config.ProtoSMTP:
			upstream, mode = up.smtp, "starttls"
		}
		// The demo has no local TLS: off loopback (--listen-host 0.0.0.0) it
		// says so plainly in the config, as a person's config would have to.
		plain := ""
		if !config.IsLoopbackListen(listen[i]) {
			plain = ", allow_plaintext: true"
		}
		fmt.Fprintf(&b, "  - {protocol: %s, listen: %s, upstream: %s, upstream_tls: %s, ca_file: %s%s}\n",
			l.Protocol, strconv.Quote(listen[i]), strconv.Quote(upstream), mode, memupstream.CAFileName, plain)
	}
	fmt.Fprintf(&b, "accounts:\n  - login: %s\n    password_hash: '%s'\n    identity: %s\n    mailbox: %s\n    provider: %s\n",
		Login, passwordHash, Identity, Identity, providerName)

	path := filepath.Join(dir, ConfigFileName)
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return nil, fmt.Errorf("writing the demo configuration: %w", err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		var problems config.Problems
		if errors.As(err, &problems) {
			return nil, fmt.Errorf("the demo configuration %s is invalid (a bug: please report it): %w", path, err)
		}
		return nil, fmt.Errorf("loading the demo configuration: %w", err)
	}
	return cfg, nil
}

// CheckHost accepts an IP address or "localhost" as the listen host.
func CheckHost(host string) error {
	if host == "localhost" || net.ParseIP(host) != nil {
		return nil
	}
	return fmt.Errorf("listen host %q is not an IP address: use 127.0.0.1 (the default), ::1 or 0.0.0.0", host)
}
