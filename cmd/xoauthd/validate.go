package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/check"
)

// runValidate loads and validates the configuration: every problem with its
// YAML path and line on stderr and status 1, or warnings (allowed but weaker
// settings) on stderr and a one-line summary.
func runValidate(_ context.Context, inv *invocation) int {
	fs := inv.flagSet("[--config FILE]")
	path := configFlag(fs)
	if code, ok := inv.noArgs(fs); !ok {
		return code
	}
	cfg, err := config.Load(*path)
	var problems config.Problems
	if errors.As(err, &problems) {
		fmt.Fprintf(inv.stderr, "%s: %s\n", *path, check.Plural(len(problems), "problem"))
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
		check.Plural(len(cfg.Accounts), "account"), check.Plural(len(cfg.Servers), "server"), *path)
	return exitOK
}
