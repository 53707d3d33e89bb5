//go:build unix && !linux

package testupstream

import "syscall"

const (
	sigTerm = syscall.SIGTERM
	sigKill = syscall.SIGKILL
)

// procAttr puts Dovecot in its own process group so Stop reaches every child.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// signalGroup sends sig to every process in group pgid.
func signalGroup(pgid int, sig syscall.Signal) error { return syscall.Kill(-pgid, sig) }

// groupAlive reports whether any process (zombies included) is in group pgid.
func groupAlive(pgid int) bool { return syscall.Kill(-pgid, 0) == nil }
