package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// Build information, injected with
//
//	go build -ldflags "-X main.version=v1.2.3 -X main.commit=$(git rev-parse --short HEAD)"
//
// Without it, the module version and VCS revision recorded by the Go
// toolchain are used when present.
var (
	version = "dev"
	commit  = "unknown"
)

// runVersion prints "xoauthd VERSION (commit COMMIT, GOVERSION OS/ARCH)".
func runVersion(_ context.Context, inv *invocation) int {
	fs := inv.flagSet("")
	if code, ok := inv.noArgs(fs); !ok {
		return code
	}
	v, c := buildVersion()
	fmt.Fprintf(inv.stdout, "xoauthd %s (commit %s, %s %s/%s)\n", v, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}

// buildVersion returns the version and commit: the -ldflags values when set,
// else what debug.ReadBuildInfo recorded (module version, vcs.revision with
// "-dirty" for a modified tree).
func buildVersion() (v, c string) {
	v, c = version, commit
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return v, c
	}
	if v == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		v = info.Main.Version
	}
	if c != "unknown" {
		return v, c
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev != "" {
		c = rev + dirty
	}
	return v, c
}
