package testupstream

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

const (
	sigTerm = syscall.SIGTERM
	sigKill = syscall.SIGKILL
)

// maxStatBytes bounds one /proc/PID/stat read.
const maxStatBytes = 4096

// procAttr puts Dovecot in its own process group (so Stop reaches every
// child) and asks the kernel to stop it if the test binary dies.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

// signalGroup sends sig to every process in group pgid.
func signalGroup(pgid int, sig syscall.Signal) error {
	return syscall.Kill(-pgid, sig)
}

// groupAlive reports whether a process other than a zombie is in group pgid.
// Zombies do not count: orphans are reaped by whatever runs as PID 1, which
// may be slow or never do it in a container.
func groupAlive(pgid int) bool {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		if state, pg, ok := readStat(path); ok && pg == pgid && state != 'Z' && state != 'X' {
			return true
		}
	}
	return false
}

// readStat reads /proc/PID/stat and returns the state and process group.
func readStat(path string) (state byte, pgrp int, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	buf := make([]byte, maxStatBytes)
	n, _ := io.ReadFull(f, buf)
	return parseStat(buf[:n])
}

// parseStat parses "pid (comm) state ppid pgrp ..." (proc(5)); comm may
// contain spaces and parentheses, so fields are counted after the last ')'.
func parseStat(buf []byte) (state byte, pgrp int, ok bool) {
	i := bytes.LastIndexByte(buf, ')')
	if i < 0 {
		return 0, 0, false
	}
	fields := bytes.Fields(buf[i+1:])
	if len(fields) < 3 || len(fields[0]) != 1 {
		return 0, 0, false
	}
	pg, err := strconv.Atoi(string(fields[2]))
	if err != nil || pg < 0 {
		return 0, 0, false
	}
	return fields[0][0], pg, true
}
