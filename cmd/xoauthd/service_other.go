//go:build !windows

package main

import (
	"context"
	"fmt"

	"github.com/xoauthd/xoauthd/config"
)

// runService explains that "xoauthd service" is for Windows and names what
// to use instead; it exits 2. Arguments are still checked, so --help and
// mistakes behave as on Windows.
func runService(_ context.Context, inv *invocation) int {
	action, _, code, ok := parseService(inv, config.DefaultPath())
	if !ok {
		return code
	}
	fmt.Fprintf(inv.stderr, "xoauthd service %s: Windows only; on Linux run \"xoauthd serve\" under systemd "+
		"(deploy/systemd/xoauthd.service: systemctl enable --now xoauthd), in a container, or under your OS's service manager\n", action)
	return exitUsage
}
