package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
	"unicode"

	"gopkg.in/yaml.v3"
)

// Bounds of "xoauthd health".
const (
	// defaultHealthTimeout is how long health waits for the admin endpoint.
	defaultHealthTimeout = 5 * time.Second
	// maxHealthBody bounds how much of a /healthz or /readyz answer is read.
	maxHealthBody = 64 << 10
	// maxHealthConfig bounds how much of the configuration file is read to
	// find admin.listen (the same bound the configuration loader uses).
	maxHealthConfig = 1 << 20
	// maxReasonLen bounds the part of an answer quoted in the one-line reason.
	maxReasonLen = 200
)

// runHealth asks the admin endpoint whether the daemon is alive (/healthz)
// or, with --ready, ready to serve (/readyz): exit 0 on 200, 1 otherwise
// with a one-line reason. It is the container HEALTHCHECK and the probe
// command, so it needs no shell and no curl.
func runHealth(ctx context.Context, inv *invocation) int {
	fs := inv.flagSet("[--config FILE] [--url URL] [--ready] [--timeout DURATION]")
	path := configFlag(fs)
	base := fs.String("url", "", "base `URL` of the admin endpoint, like http://127.0.0.1:9925 (default: admin.listen from the configuration)")
	ready := fs.Bool("ready", false, "check /readyz (listeners up, configuration loaded, store readable) instead of /healthz, and print its answer")
	timeout := fs.Duration("timeout", defaultHealthTimeout, "give up after this `DURATION`")
	if code, ok := inv.noArgs(fs); !ok {
		return code
	}
	if *timeout <= 0 {
		return inv.usageError(fs, "--timeout must be positive, like 5s")
	}
	endpoint := "/healthz"
	if *ready {
		endpoint = "/readyz"
	}
	if *base == "" {
		listen, err := adminListen(*path)
		if err != nil {
			return inv.fail(err)
		}
		if *base, err = adminBaseURL(listen); err != nil {
			return inv.fail(fmt.Errorf("admin.listen in %s: %w", *path, err))
		}
	}
	target, err := healthTarget(*base, endpoint)
	if err != nil {
		return inv.usageError(fs, "--url: %v", err)
	}
	status, body, err := getHealth(ctx, target, *timeout)
	if err != nil {
		return inv.fail(err)
	}
	if text := strings.TrimSpace(body); text != "" && (status == http.StatusOK || *ready) {
		fmt.Fprintln(inv.stdout, text)
	}
	if status == http.StatusOK {
		return exitOK
	}
	reason := fmt.Sprintf("%s answered %d %s", target, status, http.StatusText(status))
	if first := firstLine(body); first != "" && !*ready {
		reason += ": " + first
	}
	return inv.fail(errors.New(reason))
}

// adminListen reads admin.listen from the configuration file at path. It
// reads only that key on purpose: a probe must not fail because the file
// on disk has a mistake that the running daemon rejected on reload while
// it keeps serving the previous configuration.
func adminListen(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("reading admin.listen: %w (pass --config FILE, or --url http://HOST:PORT)", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxHealthConfig))
	if err != nil {
		return "", fmt.Errorf("reading admin.listen from %s: %w", path, err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		msg := strings.Join(strings.Fields(err.Error()), " ")
		return "", fmt.Errorf("reading admin.listen from %s: %s (run \"xoauthd validate\", or pass --url http://HOST:PORT)", path, msg)
	}
	listen := mappingValue(mappingValue(&doc, "admin"), "listen")
	if listen == nil || listen.Kind != yaml.ScalarNode || listen.Value == "" {
		return "", fmt.Errorf("the admin endpoint is off in %s: set admin.listen (like 127.0.0.1:9925) and restart xoauthd, or pass --url", path)
	}
	return listen.Value, nil
}

// mappingValue returns the value of key in a YAML mapping node (the last
// one when the key repeats), or nil. A document node stands for its root.
// Walking nodes rather than decoding tolerates mistakes elsewhere in the
// file, such as a repeated key.
func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	var v *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			v = n.Content[i+1]
		}
	}
	return v
}

// adminBaseURL turns a listen address into the URL to reach it from the
// same host: an unspecified host (":9925", "0.0.0.0:9925", "[::]:9925")
// is reached on loopback.
func adminBaseURL(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("%q is not host:port; pass --url http://HOST:PORT", listen)
	}
	if port == "" || port == "0" {
		return "", fmt.Errorf("%q has no fixed port; pass --url http://HOST:PORT", listen)
	}
	switch ip := net.ParseIP(host); {
	case host == "" || (ip != nil && ip.Equal(net.IPv4zero)):
		host = "127.0.0.1"
	case ip != nil && ip.Equal(net.IPv6unspecified):
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// healthTarget appends endpoint to the admin endpoint's base URL; a base
// without a scheme ("127.0.0.1:9925") is taken as http.
func healthTarget(base, endpoint string) (string, error) {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(base)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", fmt.Errorf("%q is not a URL (%v); write it like http://127.0.0.1:9925", base, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("scheme %q is not http or https; write it like http://127.0.0.1:9925", u.Scheme)
	}
	if u.Host == "" {
		return "", fmt.Errorf("%q has no host; write it like http://127.0.0.1:9925", base)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + endpoint
	u.RawPath, u.RawQuery, u.Fragment, u.ForceQuery = "", "", "", false
	return u.String(), nil
}

// getHealth GETs target directly (no proxy from the environment, no
// redirects) and returns the status and the first maxHealthBody bytes of
// the answer. An error means there was no answer.
func getHealth(ctx context.Context, target string, timeout time.Duration) (status int, body string, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return 0, "", fmt.Errorf("asking %s: %w", target, err)
	}
	client := &http.Client{
		Transport:     &http.Transport{Proxy: nil, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return 0, "", fmt.Errorf("no answer from %s within %v (is xoauthd stuck or overloaded?)", target, timeout)
		}
		return 0, "", fmt.Errorf("cannot reach %s: %w (is xoauthd running with admin.listen at that address?)", target, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxHealthBody))
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return 0, "", fmt.Errorf("no complete answer from %s within %v (is xoauthd stuck or overloaded?)", target, timeout)
		}
		return 0, "", fmt.Errorf("reading the answer of %s: %w", target, err)
	}
	return resp.StatusCode, printable(string(data)), nil
}

// firstLine returns the first non-empty line of s, cut to maxReasonLen
// runes, for a one-line reason.
func firstLine(s string) string {
	for line := range strings.Lines(s) {
		if line = strings.TrimSpace(line); line != "" {
			if r := []rune(line); len(r) > maxReasonLen {
				line = string(r[:maxReasonLen]) + "…"
			}
			return line
		}
	}
	return ""
}

// printable replaces control characters other than newline and tab, so an
// answer cannot move the cursor or rewrite a terminal.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || !unicode.IsControl(r) {
			return r
		}
		return '?'
	}, strings.ToValidUTF8(s, "?"))
}
