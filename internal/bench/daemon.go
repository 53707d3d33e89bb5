package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Timings of the xoauthd process.
const (
	buildTimeout   = 5 * time.Minute  // go build of cmd/xoauthd
	readyTimeout   = 20 * time.Second // until xoauthd greets on its IMAP port
	readyPoll      = 20 * time.Millisecond
	stopTimeout    = 15 * time.Second // SIGTERM until SIGKILL
	ctlTimeout     = 2 * time.Minute  // one profiling control request
	maxCtlBody     = 1 << 20          // bytes of a control reply read
	logTailBytes   = 8 << 10          // of xoauthd's log quoted in errors
	daemonLogName  = "xoauthd.log"
	daemonBinName  = "xoauthd"
	daemonDrainArg = "2s" // serve --drain: the benchmark closes every session itself
)

// daemonProc is xoauthd running as a separate process.
type daemonProc struct {
	cmd     *exec.Cmd
	pid     int
	logPath string
	ctl     string        // profiling control address; "" without --profile
	done    chan struct{} // closed when the process has exited
	waitErr error         // valid after done
}

// startDaemon starts xoauthd (`xoauthd serve`, or the profiled in-process
// variant with --profile) and waits until it greets on imapAddr.
func startDaemon(ctx context.Context, opts options, dir, cfgPath, imapAddr string, log *slog.Logger) (*daemonProc, error) {
	p := &daemonProc{logPath: filepath.Join(dir, daemonLogName), done: make(chan struct{})}
	var bin string
	var args []string
	if opts.profileDir != "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding the benchmark binary for the profiled daemon: %w", err)
		}
		if p.ctl, err = freeAddr(); err != nil {
			return nil, err
		}
		bin = exe
		args = []string{profiledDaemonArg, "--config", cfgPath, "--ctl", p.ctl, "--profile-dir", opts.profileDir}
	} else {
		bin = opts.xoauthd
		if bin == "" {
			var err error
			if bin, err = buildXoauthd(ctx, dir, log); err != nil {
				return nil, err
			}
		}
		args = []string{"serve", "--config", cfgPath, "--drain", daemonDrainArg}
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating the xoauthd log: %w", err)
	}
	defer logf.Close() // the child holds its own descriptor
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = childProcAttr()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	p.pid = p.cmd.Process.Pid
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	if err := p.waitReady(ctx, imapAddr); err != nil {
		_ = p.stop()
		return nil, err
	}
	log.Info("xoauthd running", "pid", p.pid, "binary", bin, "log", p.logPath)
	return p, nil
}

// buildXoauthd builds cmd/xoauthd of the module the benchmark belongs to.
func buildXoauthd(ctx context.Context, dir string, log *slog.Logger) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, goBin, "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("finding the xoauthd module (run the benchmark from the repository, or pass --xoauthd BINARY): %v", err)
	}
	bin := filepath.Join(dir, daemonBinName)
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, "./cmd/xoauthd")
	cmd.Dir = filepath.Dir(gomod)
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building xoauthd: %w\n%s", err, out)
	}
	log.Info("built xoauthd", "binary", bin, "took", time.Since(start).Round(time.Millisecond))
	return bin, nil
}

// waitReady polls imapAddr until xoauthd's greeting arrives.
func (p *daemonProc) waitReady(ctx context.Context, imapAddr string) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		err := probeIMAP(ctx, imapAddr)
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("xoauthd exited during startup (%v):\n%s", p.waitErr, p.logTail())
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("xoauthd did not greet on %s within %v: %w\n%s", imapAddr, readyTimeout, err, p.logTail())
		}
		time.Sleep(readyPoll)
	}
}

// probeIMAP connects to addr and reads an IMAP greeting.
func probeIMAP(ctx context.Context, addr string) error {
	w, err := dialWire(ctx, addr)
	if err != nil {
		return err
	}
	defer w.Close()
	return w.imapGreeting()
}

// alive reports an error when the process has exited.
func (p *daemonProc) alive() error {
	select {
	case <-p.done:
		return fmt.Errorf("xoauthd exited (%v):\n%s", p.waitErr, p.logTail())
	default:
		return nil
	}
}

// stats reads the process's resident memory and CPU time.
func (p *daemonProc) stats() (procStats, error) { return readProcStats(p.pid) }

// stop sends SIGTERM and waits; SIGKILL after stopTimeout.
func (p *daemonProc) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("xoauthd did not stop within %v of SIGTERM; killed it", stopTimeout)
	}
}

// logTail returns the end of xoauthd's log.
func (p *daemonProc) logTail() string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(0, st.Size()-logTailBytes)
	b := make([]byte, st.Size()-off)
	n, _ := f.ReadAt(b, off)
	return string(b[:n])
}

// profiling reports whether the daemon takes profiles (--profile).
func (p *daemonProc) profiling() bool { return p.ctl != "" }

// control sends one request to the profiled daemon's control endpoint and
// returns the body. It does nothing without --profile.
func (p *daemonProc) control(ctx context.Context, action, name string) ([]byte, error) {
	if !p.profiling() {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, ctlTimeout)
	defer cancel()
	u := "http://" + p.ctl + "/" + action + "?name=" + url.QueryEscape(name)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("profiling %s: %w", action, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCtlBody))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("profiling %s: %s: %s", action, resp.Status, body)
	}
	return body, nil
}

// memStats returns the profiled daemon's runtime memory figures (nil
// without --profile).
func (p *daemonProc) memStats(ctx context.Context) (*runtimeMem, error) {
	body, err := p.control(ctx, ctlMemStats, "")
	if err != nil || body == nil {
		return nil, err
	}
	var m runtimeMem
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("decoding memstats: %w", err)
	}
	return &m, nil
}

// errNotLinux is returned by the /proc readers elsewhere.
var errNotLinux = errors.New("process statistics need Linux /proc")
