//go:build unix

package e2e

import (
	"fmt"
	"syscall"
)

// setFileLimit raises RLIMIT_NOFILE to at least n (the hard limit too, when
// the process may).
func setFileLimit(n uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= n {
		return nil
	}
	want := syscall.Rlimit{Cur: n, Max: max(lim.Max, n)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		return fmt.Errorf("raising the open-file limit from %d to %d: %w", lim.Cur, n, err)
	}
	return nil
}
