package testupstream

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// startLocked launches the master in the foreground and waits until every
// listener greets. d.mu must be held.
func (d *Dovecot) startLocked() error {
	if d.proc != nil {
		return nil
	}
	stderr, err := os.OpenFile(filepath.Join(d.Dir, stderrFileName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening dovecot stderr file: %w", err)
	}
	defer stderr.Close() // the child has its own copy
	cmd := exec.Command(d.bin, "-F", "-c", filepath.Join(d.Dir, confFileName))
	cmd.Dir = d.Dir
	cmd.Stdout, cmd.Stderr = stderr, stderr
	cmd.SysProcAttr = procAttr()
	logStart := fileSize(filepath.Join(d.Dir, logFileName))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", d.bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	d.proc = p
	if err := d.waitReady(p); err != nil {
		_ = d.stopLocked()
		return d.explainStartFailure(err, logStart)
	}
	return nil
}

// explainStartFailure adds Dovecot's own words to a start failure and
// recognises a port collision.
func (d *Dovecot) explainStartFailure(err error, logStart int64) error {
	logText := readFrom(filepath.Join(d.Dir, logFileName), logStart, logTailBytes)
	stderrText := tailFile(filepath.Join(d.Dir, stderrFileName), logTailBytes)
	if strings.Contains(logText, "Address already in use") || strings.Contains(stderrText, "Address already in use") {
		return fmt.Errorf("%w: %w", errPortInUse, err)
	}
	return fmt.Errorf("starting dovecot in %s: %w\n--- dovecot.log ---\n%s\n--- stderr ---\n%s", d.Dir, err, logText, stderrText)
}

// waitReady probes each listener until it greets, the master exits, or
// startTimeout passes.
func (d *Dovecot) waitReady(p *process) error {
	deadline := time.Now().Add(startTimeout)
	probes := []struct {
		addr   string
		tls    bool
		prefix string
	}{
		{d.IMAPAddr, true, "* OK"},
		{d.POP3Addr, true, "+OK"},
		{d.SubmissionAddr, false, "220 "},
	}
	tlsConf := d.TLSConfig()
	for _, pr := range probes {
		for {
			err := probe(pr.addr, pr.tls, tlsConf, pr.prefix)
			if err == nil {
				break
			}
			select {
			case <-p.done:
				return fmt.Errorf("dovecot exited during startup: %v", p.err)
			default:
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s did not greet within %v: %w", pr.addr, startTimeout, err)
			}
			time.Sleep(pollInterval)
		}
	}
	return nil
}

// probe connects to addr (over TLS if useTLS) and checks that the first line
// starts with prefix.
func probe(addr string, useTLS bool, conf *tls.Config, prefix string) error {
	dl := net.Dialer{Timeout: probeTimeout}
	conn, err := dl.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(probeTimeout)); err != nil {
		return err
	}
	if useTLS {
		tc := tls.Client(conn, conf)
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("tls handshake: %w", err)
		}
		conn = tc
	}
	line, err := bufio.NewReaderSize(conn, maxGreeting).ReadSlice('\n')
	if err != nil {
		return fmt.Errorf("reading greeting: %w", err)
	}
	if !strings.HasPrefix(string(line), prefix) {
		return fmt.Errorf("unexpected greeting %q", line)
	}
	return nil
}

// stopLocked terminates the master and its children, then waits until no
// process of the group is left. d.mu must be held.
func (d *Dovecot) stopLocked() error {
	p := d.proc
	if p == nil {
		return nil
	}
	d.proc = nil
	pid := p.cmd.Process.Pid
	_ = signalGroup(pid, sigTerm)
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		_ = signalGroup(pid, sigKill)
		<-p.done
	}
	// Login processes hold the listening sockets; none may survive the master.
	_ = signalGroup(pid, sigKill)
	if !waitGroupGone(pid, reapTimeout) {
		return fmt.Errorf("stopping dovecot: processes of group %d still alive after %v", pid, reapTimeout)
	}
	return nil
}

// waitGroupGone polls until the process group pgid is empty.
func waitGroupGone(pgid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for groupAlive(pgid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollInterval)
	}
	return true
}

// fileSize returns the size of path, or 0.
func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// readFrom returns up to the last n bytes of path after offset off.
func readFrom(path string, off, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	size := fileSize(path)
	off = max(off, size-n)
	if off >= size {
		return ""
	}
	buf := make([]byte, size-off)
	k, err := f.ReadAt(buf, off)
	if err != nil && !errors.Is(err, os.ErrClosed) && k == 0 {
		return ""
	}
	return strings.ToValidUTF8(string(buf[:k]), "?")
}
