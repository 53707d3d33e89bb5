//go:build !linux

package main

import (
	"syscall"
	"time"
)

// procStats is a snapshot of one process's resources.
type procStats struct {
	RSSKiB  int64
	CPU     time.Duration
	Threads int
}

// readProcStats needs Linux.
func readProcStats(int) (procStats, error) { return procStats{}, errNotLinux }

// parseStatCPU needs Linux.
func parseStatCPU([]byte) (time.Duration, error) { return 0, errNotLinux }

// raiseFileLimit needs Linux.
func raiseFileLimit(uint64) (uint64, error) { return 0, errNotLinux }

// memTotalKiB needs Linux.
func memTotalKiB() int64 { return 0 }

// childProcAttr has nothing to set elsewhere.
func childProcAttr() *syscall.SysProcAttr { return nil }

// groupCPU needs Linux.
func groupCPU(int) time.Duration { return 0 }

// findProcess needs Linux.
func findProcess(...string) int { return 0 }

// selfCPU needs Linux.
func selfCPU() time.Duration { return 0 }

// loadAverage needs Linux.
func loadAverage() float64 { return -1 }
