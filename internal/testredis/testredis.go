package testredis

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/internal/testkit"
)

// Binary is the server that Start runs, found on PATH or in /usr/bin.
const Binary = "redis-server"

// startTimeout bounds the wait for a starting server to answer PING.
const startTimeout = 10 * time.Second

// Server is one redis-server process owned by a test.
type Server struct {
	t    testing.TB
	bin  string
	dir  string // the server's working directory: its data and log
	port int
	args []string // of the server, after the binary
	// caFile and tlsConf are set for a server that speaks TLS (StartTLS).
	caFile  string
	tlsConf *tls.Config

	mu  sync.Mutex
	cmd *exec.Cmd // nil while stopped
}

// Start starts a redis-server on a free loopback port and stops it when
// the test ends. Its data persist across Stop and Start (an append-only
// file, fsynced on every write), like a Redis with persistence. extra are
// more server options, like "--requirepass", "secret".
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	s := newServer(t)
	s.args = append([]string{"--bind", "127.0.0.1", "--port", strconv.Itoa(s.port), "--dir", s.dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "always",
		"--daemonize", "no", "--protected-mode", "yes",
		"--logfile", filepath.Join(s.dir, "redis.log")}, extra...)
	s.run(t)
	return s
}

// StartSentinel starts a Redis Sentinel that watches master under the
// name group (quorum 1), and stops it when the test ends.
func StartSentinel(t testing.TB, master *Server, group string) *Server {
	t.Helper()
	s := newServer(t)
	conf := filepath.Join(s.dir, "sentinel.conf")
	text := fmt.Sprintf("bind 127.0.0.1\nport %d\ndir %s\nlogfile %s\nsentinel monitor %s 127.0.0.1 %d 1\n",
		s.port, s.dir, filepath.Join(s.dir, "redis.log"), group, master.port)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	s.args = []string{conf, "--sentinel"}
	s.run(t)
	return s
}

// run starts s and stops it when the test ends.
func (s *Server) run(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
}

// newServer finds the binary (or skips) and picks a port and a directory.
func newServer(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath(Binary)
	if err != nil {
		if _, serr := os.Stat("/usr/bin/" + Binary); serr == nil {
			bin, err = "/usr/bin/"+Binary, nil
		}
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed, and CI=true: the Redis tests must run in CI (install the redis-server package)", Binary)
		}
		t.Skipf("SKIPPING: %s is not installed, so this Redis test does not run (install the redis-server package)", Binary)
	}
	return &Server{t: t, bin: bin, dir: t.TempDir(), port: freePort(t)}
}

// freePort returns a loopback port below the ephemeral range, so that no
// outgoing connection takes it while the server is stopped between Stop and
// Restart.
func freePort(t testing.TB) int {
	t.Helper()
	ports, err := testkit.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	return ports[0]
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is the server's redis:// URL, or rediss:// with TLS (database 0).
func (s *Server) URL() string {
	if s.tlsConf != nil {
		return "rediss://" + s.Addr() + "/0"
	}
	return "redis://" + s.Addr() + "/0"
}

// start runs the server and waits until it answers.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", s.bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(startTimeout)
	for {
		if err := s.ping(); err == nil {
			s.cmd = cmd
			go func() { <-exited }()
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("%s exited at start (%v); its log:\n%s", s.bin, err, s.logTail())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return fmt.Errorf("%s did not answer on %s within %v; its log:\n%s", s.bin, s.Addr(), startTimeout, s.logTail())
		}
	}
}

// ping sends PING and expects +PONG (or -NOAUTH).
func (s *Server) ping() error {
	d := &net.Dialer{Timeout: time.Second}
	var c net.Conn
	var err error
	if s.tlsConf != nil {
		c, err = tls.DialWithDialer(d, "tcp", s.Addr(), s.tlsConf)
	} else {
		c, err = d.Dial("tcp", s.Addr())
	}
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	// NOAUTH: up, but it wants a user and password first.
	if !strings.HasPrefix(line, "+PONG") && !strings.HasPrefix(line, "-NOAUTH") {
		return errors.New("unexpected reply " + strings.TrimSpace(line))
	}
	return nil
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Stop kills the server at once (SIGKILL, as a crash or a lost node); the
// data written so far stay in its directory. Stopping a stopped server
// does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	s.cmd = nil
	// Wait until the port is closed, so a client sees it down.
	deadline := time.Now().Add(startTimeout)
	for s.ping() == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

// Restart starts a stopped server again on the same port with its data.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatal(err)
	}
}

// RestartEmpty stops the server and starts it again without its data, as
// a Redis without persistence comes back.
func (s *Server) RestartEmpty() {
	s.t.Helper()
	s.Stop()
	entries, _ := os.ReadDir(s.dir)
	for _, e := range entries {
		if e.Name() != "redis.log" {
			_ = os.RemoveAll(filepath.Join(s.dir, e.Name()))
		}
	}
	s.Restart()
}
