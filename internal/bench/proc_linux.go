package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Bounds of the /proc reads.
const (
	maxProcFile = 64 << 10 // bytes of one /proc file read
	// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat
	// (100 on every Linux architecture Go supports).
	clockTicks = 100
)

// procStats is a snapshot of one process's resources.
type procStats struct {
	RSSKiB  int64         // VmRSS
	CPU     time.Duration // utime + stime
	Threads int
}

// readProcStats reads /proc/PID/status and /proc/PID/stat.
func readProcStats(pid int) (procStats, error) {
	var st procStats
	status, err := readProcFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, err
	}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(val)
		if len(fields) == 0 {
			continue
		}
		switch key {
		case "VmRSS":
			st.RSSKiB, _ = strconv.ParseInt(fields[0], 10, 64)
		case "Threads":
			st.Threads, _ = strconv.Atoi(fields[0])
		}
	}
	stat, err := readProcFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, err
	}
	st.CPU, err = parseStatCPU(stat)
	return st, err
}

// parseStatCPU returns utime+stime of a /proc/PID/stat line. The command
// name (field 2) may hold spaces and parentheses, so fields are counted
// after its last ')'.
func parseStatCPU(stat []byte) (time.Duration, error) {
	if bytes.LastIndexByte(stat, ')') < 0 {
		return 0, fmt.Errorf("parsing /proc stat: no command name")
	}
	fields := statFields(stat)
	// After the name: state(3) ... utime(14) stime(15), so indexes 11 and 12.
	if len(fields) < 13 {
		return 0, fmt.Errorf("parsing /proc stat: %d fields", len(fields))
	}
	ut, err1 := strconv.ParseInt(fields[11], 10, 64)
	stm, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parsing /proc stat cpu times %q %q", fields[11], fields[12])
	}
	return time.Duration(ut+stm) * time.Second / clockTicks, nil
}

// readProcFile reads a small /proc file.
func readProcFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, maxProcFile)
	n, err := f.Read(buf)
	if n == 0 && err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return buf[:n], nil
}

// raiseFileLimit raises RLIMIT_NOFILE (soft and, when allowed, hard) to at
// least want, so that the benchmark and the processes it starts (xoauthd,
// Dovecot) can hold the connections of the session ramp. It returns the
// soft limit in force.
func raiseFileLimit(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("reading the open file limit: %w", err)
	}
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	next := syscall.Rlimit{Cur: want, Max: max(lim.Max, want)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err != nil {
		// Without privilege the hard limit is the ceiling.
		next = syscall.Rlimit{Cur: lim.Max, Max: lim.Max}
		if err2 := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err2 != nil {
			return lim.Cur, fmt.Errorf("raising the open file limit to %d: %w", want, err)
		}
	}
	return next.Cur, nil
}

// memTotalKiB returns MemTotal of /proc/meminfo.
func memTotalKiB() int64 {
	b, err := readProcFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// childProcAttr asks the kernel to stop xoauthd if the benchmark dies.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}

// statFields returns the fields of a /proc/PID/stat line after the command
// name (the first is the state, field 3).
func statFields(stat []byte) []string {
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return nil
	}
	return strings.Fields(string(stat[end+1:]))
}

// groupCPU returns the CPU time (own and reaped children's) of every
// process in process group pgid.
func groupCPU(pgid int) time.Duration {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var ticks int64
	for _, path := range stats {
		b, err := readProcFile(path)
		if err != nil {
			continue
		}
		f := statFields(b)
		// pgrp is field 5 (index 2); utime, stime, cutime, cstime are
		// fields 14-17 (indexes 11-14).
		if len(f) < 15 || f[2] != strconv.Itoa(pgid) {
			continue
		}
		for _, s := range f[11:15] {
			n, _ := strconv.ParseInt(s, 10, 64)
			ticks += n
		}
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// findProcess returns the pid of the process whose command line contains
// every one of words, or 0.
func findProcess(words ...string) int {
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, path := range cmdlines {
		b, err := readProcFile(path)
		if err != nil {
			continue
		}
		line := string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		match := true
		for _, w := range words {
			match = match && strings.Contains(line, w)
		}
		if match {
			pid, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(path, "/proc/"), "/cmdline"))
			return pid
		}
	}
	return 0
}

// selfCPU returns the CPU time of this process.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loadAverage returns the 1-minute load average, or -1.
func loadAverage() float64 {
	b, err := readProcFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}
