package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/xoauthd/xoauthd/config"
)

// runValidate loads and validates the configuration: every problem with its
// YAML path and line on stderr and status 1, or a one-line summary after
// any warnings (risky but valid settings) on stderr.
func runValidate(_ context.Context, inv *invocation) int {
	fs := inv.flagSet("[--config FILE]")
	path := configFlag(fs)
	if code, ok := inv.noArgs(fs); !ok {
		return code
	}
	cfg, err := config.Load(*path)
	var problems config.Problems
	if errors.As(err, &problems) {
		fmt.Fprintf(inv.stderr, "%s: %s\n", *path, plural(len(problems), "problem"))
		for _, p := range problems {
			fmt.Fprintf(inv.stderr, "  %s\n", p)
		}
		return exitFailure
	}
	if err != nil {
		return inv.fail(err)
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(inv.stderr, "warning: %s\n", w)
	}
	fmt.Fprintf(inv.stdout, "ok: %s, %s in %s\n",
		plural(len(cfg.Accounts), "account"), plural(len(cfg.Servers), "server"), *path)
	return exitOK
}

// plural writes "1 account" or "3 accounts".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
