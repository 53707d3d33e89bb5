//go:build !windows

package diagnose

import "syscall"

// The socket errors explainNet recognises.
var (
	errnoRefused     = []error{syscall.ECONNREFUSED}
	errnoReset       = []error{syscall.ECONNRESET, syscall.EPIPE}
	errnoUnreachable = []error{syscall.ENETUNREACH, syscall.EHOSTUNREACH}
)
