package testupstream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xoauthd/xoauthd/internal/testkit"
)

// Timeouts and limits of the rig.
const (
	startTimeout   = 20 * time.Second      // Dovecot up and greeting on every port
	stopTimeout    = 10 * time.Second      // graceful shutdown before SIGKILL
	reapTimeout    = 5 * time.Second       // for the last child processes to vanish
	pollInterval   = 20 * time.Millisecond // readiness and reaping polls
	probeTimeout   = 2 * time.Second       // one readiness probe
	maxGreeting    = 1024                  // bytes of a greeting line we read
	portAttempts   = 4                     // start attempts when a port was taken
	maxBaseDirLen  = 70                    // unix socket paths are limited to 107 bytes
	logTailBytes   = 4096                  // of dovecot.log quoted in errors
	maxLogBytes    = 1 << 20               // of dovecot.log returned by Log
	debianPackages = "dovecot-core dovecot-imapd dovecot-pop3d dovecot-submissiond"
)

// ErrUnavailable means Dovecot cannot run here: the binary is missing or the
// process is not root. New fails a test with it (under -short New skips
// the test before Dovecot is tried).
var ErrUnavailable = errors.New("dovecot test upstream unavailable (hint: run as root with the Debian packages " + debianPackages + " installed)")

// errPortInUse means Dovecot exited because one of its ports was taken.
var errPortInUse = errors.New("dovecot: a listener port is already in use")

// Options configures Start.
type Options struct {
	// JWTKey is the HS256 key access tokens are signed with (the identity
	// provider's signing key). Required.
	JWTKey []byte
	// Dir holds config, certificates, sockets, logs and Maildirs. Empty means
	// a new temporary directory that Close removes. Its path must be short
	// (unix socket paths live below it).
	Dir string
	// Binary is the dovecot executable; empty means the one on PATH, else
	// /usr/sbin/dovecot.
	Binary string
	// MaxUserIPConnections is mail_max_userip_connections, the sessions
	// one user may have open from one address (xoauthd's); 0 keeps
	// Dovecot's default of 10.
	MaxUserIPConnections int
}

// Dovecot is a running (or stopped) Dovecot 2.3 instance.
type Dovecot struct {
	// IMAPAddr is IMAPS (implicit TLS) on 127.0.0.1.
	IMAPAddr string
	// POP3Addr is POP3S (implicit TLS) on 127.0.0.1.
	POP3Addr string
	// SubmissionAddr is SMTP submission (STARTTLS) on 127.0.0.1.
	SubmissionAddr string
	// CAFile is the PEM file of the CA that signed Dovecot's certificate.
	CAFile string
	// CAPool holds that CA.
	CAPool *x509.CertPool
	// ServerName is the name Dovecot's certificate is valid for.
	ServerName string
	// Sink receives everything the submission service relays.
	Sink *Sink
	// Dir is the directory everything lives in.
	Dir string

	bin    string   // the dovecot binary
	ownDir bool     // Dir was created by Start and is removed by Close
	mail   *maildir // Deliver and the Sink write here
	params confParams

	srcSeq atomic.Uint32 // source addresses handed out by SourceIP

	mu     sync.Mutex
	proc   *process // the running master; nil when stopped
	closed bool     // set by Close
}

// process is one run of the Dovecot master.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when Wait returned
	err  error         // Wait's result, valid after done
}

// Start prepares Dir and starts Dovecot on free 127.0.0.1 ports. It returns
// once IMAPS, POP3S and submission each answer with a greeting. Call Close
// (or Stop) when done.
func Start(opts Options) (*Dovecot, error) {
	bin, err := findDovecot(opts.Binary)
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: dovecot needs root to switch to the mail user", ErrUnavailable)
	}
	if len(opts.JWTKey) == 0 {
		return nil, errors.New("starting dovecot: Options.JWTKey is empty; pass the identity provider's signing key")
	}
	d := &Dovecot{ServerName: ServerName, Dir: opts.Dir, bin: bin}
	if err := d.prepareDir(); err != nil {
		d.removeOwnDir()
		return nil, err
	}
	if err := d.prepareFiles(); err != nil {
		d.removeOwnDir()
		return nil, err
	}
	d.params.MaxUserIPConnections = opts.MaxUserIPConnections
	if err := d.startOnFreePorts(opts.JWTKey); err != nil {
		_ = d.Sink.Close()
		d.removeOwnDir()
		return nil, err
	}
	return d, nil
}

// findDovecot locates the dovecot binary (sbin is often not on PATH).
func findDovecot(bin string) (string, error) {
	if bin != "" {
		st, err := os.Stat(bin)
		if err != nil || !st.Mode().IsRegular() {
			return "", fmt.Errorf("%w: %s is not an executable file", ErrUnavailable, bin)
		}
		return bin, nil
	}
	if p, err := exec.LookPath("dovecot"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/dovecot", "/usr/local/sbin/dovecot"} {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: dovecot binary not found", ErrUnavailable)
}

// prepareDir creates (or checks) the rig directory.
func (d *Dovecot) prepareDir() error {
	if d.Dir == "" {
		dir, err := os.MkdirTemp("", "dovecot-")
		if err != nil {
			return fmt.Errorf("creating dovecot directory: %w", err)
		}
		d.Dir, d.ownDir = dir, true
	}
	abs, err := filepath.Abs(d.Dir)
	if err != nil {
		return fmt.Errorf("resolving dovecot directory: %w", err)
	}
	d.Dir = abs
	if len(filepath.Join(d.Dir, runDirName)) > maxBaseDirLen {
		return fmt.Errorf("dovecot directory %s is too long for unix socket paths; use a directory of at most %d bytes", d.Dir, maxBaseDirLen-len(runDirName)-1)
	}
	if err := os.MkdirAll(d.Dir, 0o755); err != nil {
		return fmt.Errorf("creating dovecot directory: %w", err)
	}
	// Dovecot's unprivileged processes must reach sockets, keys and mail.
	if err := os.Chmod(d.Dir, 0o755); err != nil {
		return fmt.Errorf("opening dovecot directory to its service users: %w", err)
	}
	return nil
}

// prepareFiles writes certificates, creates the mail root and starts the sink.
func (d *Dovecot) prepareFiles() error {
	pki, err := writePKI(d.Dir)
	if err != nil {
		return err
	}
	d.CAFile, d.CAPool = pki.caFile, pki.pool
	for _, sub := range []string{runDirName, stateDirName} {
		if err := os.MkdirAll(filepath.Join(d.Dir, sub), 0o755); err != nil {
			return fmt.Errorf("creating dovecot %s directory: %w", sub, err)
		}
	}
	d.mail = &maildir{root: filepath.Join(d.Dir, mailDirName), uid: mailUID, gid: mailGID}
	if err := d.mail.mkdirOwned(d.mail.root); err != nil {
		return err
	}
	sink, err := newSink(d.mail, sinkMaxMessageBytes)
	if err != nil {
		return err
	}
	d.Sink = sink
	_, sinkPort, _ := net.SplitHostPort(sink.Addr)
	sp, _ := strconv.Atoi(sinkPort)
	d.params = confParams{
		Dir: d.Dir, SinkPort: sp,
		CertFile: pki.certFile, KeyFile: pki.keyFile,
		UID: mailUID, GID: mailGID,
	}
	return nil
}

// startOnFreePorts picks ports and starts Dovecot, retrying when another
// process grabbed one of the ports in between.
func (d *Dovecot) startOnFreePorts(jwtKey []byte) error {
	var err error
	for range portAttempts {
		var ports []int
		ports, err = testkit.FreePorts(3)
		if err != nil {
			return err
		}
		d.params.IMAPPort, d.params.POP3Port, d.params.SubPort = ports[0], ports[1], ports[2]
		d.IMAPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
		d.POP3Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
		d.SubmissionAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2]))
		if err = writeConfig(d.params, jwtKey); err != nil {
			return err
		}
		d.mu.Lock()
		err = d.startLocked()
		d.mu.Unlock()
		if !errors.Is(err, errPortInUse) {
			return err
		}
	}
	return err
}

// Stop stops Dovecot (every process, so the ports refuse connections);
// tests use it to simulate an outage. It is idempotent.
func (d *Dovecot) Stop() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stopLocked()
}

// Restart starts Dovecot again on the same ports (stopping it first if it
// is running). It runs dovecot.conf in Dir as it is now, so settings a caller
// appended to it take effect; mail and the Sink are kept.
func (d *Dovecot) Restart() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("restarting dovecot: the rig was closed; start a new one")
	}
	if err := d.stopLocked(); err != nil {
		return err
	}
	return d.startLocked()
}

// Close stops Dovecot and the sink and removes Dir if Start created it.
// It is idempotent.
func (d *Dovecot) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	err := errors.Join(d.stopLocked(), d.Sink.Close())
	d.removeOwnDir()
	return err
}

func (d *Dovecot) removeOwnDir() {
	if d.ownDir {
		_ = os.RemoveAll(d.Dir)
	}
}

// Deliver writes msg byte for byte into user's Maildir (new/), so IMAP and
// POP3 see it on their next look. user is an address as used in XOAUTH2.
func (d *Dovecot) Deliver(user string, msg []byte) error {
	return d.mail.deliver(user, msg)
}

// SourceIP returns a loopback address (127.0.0.2, 127.0.0.3, ...) that no
// earlier call on this Dovecot returned. Dial from it (net.Dialer.LocalAddr)
// when a test fails a login on purpose: Dovecot delays every further login
// failure from the same IP by seconds (see the package doc).
func (d *Dovecot) SourceIP() net.IP {
	idx := d.srcSeq.Add(1) - 1
	hi := idx / 253
	return net.IPv4(127, byte(hi>>8), byte(hi), byte(2+idx%253))
}

// TLSConfig returns a client TLS config that trusts the rig's CA and
// expects ServerName.
func (d *Dovecot) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: d.CAPool, ServerName: d.ServerName, MinVersion: tls.VersionTLS12}
}

// Log returns the end of Dovecot's log (for test failure messages).
func (d *Dovecot) Log() string {
	return tailFile(filepath.Join(d.Dir, logFileName), maxLogBytes)
}

// tailFile returns at most the last n bytes of a file, or "" if unreadable.
func tailFile(path string, n int64) string { return readFrom(path, 0, n) }
