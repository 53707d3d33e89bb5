//go:build windows

package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/eventlog"
	"golang.org/x/sys/windows/svc/mgr"

	"github.com/xoauthd/xoauthd/config"
)

// Windows service settings.
const (
	// serviceName is the service's name and its event log source.
	serviceName        = "xoauthd"
	serviceDisplayName = "xoauthd mail OAuth proxy"
	serviceDescription = "Lets legacy mail clients use IMAP, POP3 and SMTP with a local password " +
		"while xoauthd logs in to Microsoft 365 or Gmail with OAuth 2.0 (XOAUTH2)."
	// serviceStartWait is how long "service start" waits for the service
	// to report running (or to stop, when it cannot start).
	serviceStartWait = 30 * time.Second
	// serviceStopWait is how long "service stop" waits: the drain plus
	// time to close the store and exit.
	serviceStopWait = defaultDrain + 15*time.Second
	// servicePoll is the pause between two status queries while waiting.
	servicePoll = 250 * time.Millisecond
	// serviceResetPeriod is after how many seconds without a failure the
	// service manager forgets earlier failures (one day).
	serviceResetPeriod = 24 * 60 * 60
	// stateDirSDDL allows LocalSystem and Administrators full control and
	// nobody else, without inheriting from %ProgramData% (where Users may
	// read): the token store and its key live in this directory.
	stateDirSDDL = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"
)

// Event IDs written to the Application log under source xoauthd.
const (
	eventInfo    uint32 = 1
	eventWarning uint32 = 2
	eventError   uint32 = 3
)

// serviceRecovery restarts the service when it stops with an error, after
// 5 s, then 30 s, then every minute (like systemd's Restart=on-failure).
var serviceRecovery = []mgr.RecoveryAction{
	{Type: mgr.ServiceRestart, Delay: 5 * time.Second},
	{Type: mgr.ServiceRestart, Delay: 30 * time.Second},
	{Type: mgr.ServiceRestart, Delay: time.Minute},
}

// runService installs, removes, starts or stops the Windows service, or,
// as "service run", runs serve for the service manager.
func runService(ctx context.Context, inv *invocation) int {
	action, path, code, ok := parseService(inv, defaultServiceConfig())
	if !ok {
		return code
	}
	if action == "run" {
		return runAsService(ctx, inv, path)
	}
	m, err := mgr.Connect()
	if err != nil {
		return inv.fail(fmt.Errorf("connecting to the service manager: %w (run it from an elevated prompt: \"Run as administrator\")", err))
	}
	defer m.Disconnect()
	switch action {
	case "install":
		err = installService(inv, m, path)
	case "uninstall":
		err = uninstallService(ctx, inv, m)
	case "start":
		err = startService(ctx, inv, m)
	case "stop":
		err = stopService(ctx, inv, m)
	}
	if err != nil {
		return inv.fail(err)
	}
	return exitOK
}

// defaultServiceConfig is %ProgramData%\xoauthd\xoauthd.yaml; the token
// store defaults to the same directory.
func defaultServiceConfig() string {
	dir, err := windows.KnownFolderPath(windows.FOLDERID_ProgramData, 0)
	if err != nil || dir == "" {
		dir = os.Getenv("ProgramData")
	}
	if dir == "" {
		dir = `C:\ProgramData`
	}
	return filepath.Join(dir, "xoauthd", "xoauthd.yaml")
}

// installService checks the configuration, restricts the directory that
// holds it, registers the event log source and creates an automatic
// service that runs "xoauthd service run --config PATH" as LocalSystem.
func installService(inv *invocation, m *mgr.Mgr, given string) error {
	path, err := filepath.Abs(given)
	if err != nil {
		return fmt.Errorf("configuration path %s: %w", given, err)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding xoauthd.exe: %w", err)
	}
	if s, err := m.OpenService(serviceName); err == nil {
		s.Close()
		return fmt.Errorf("the %s service is already installed; run \"xoauthd service uninstall\" first to install it again", serviceName)
	}
	cfg, err := config.Load(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no configuration at %s: copy config.example.yaml there and edit it, or pass --config FILE", path)
	}
	if err != nil {
		return fmt.Errorf("the configuration does not load; run \"xoauthd validate --config %s\" and fix what it reports: %w", path, err)
	}
	if err := protectStateDirs(inv, path, cfg); err != nil {
		return err
	}
	_ = eventlog.Remove(serviceName) // a leftover registration would make the next call fail
	if err := eventlog.InstallAsEventCreate(serviceName, eventlog.Error|eventlog.Warning|eventlog.Info); err != nil {
		return fmt.Errorf("registering the event log source %s: %w", serviceName, err)
	}
	s, err := m.CreateService(serviceName, exe, mgr.Config{
		DisplayName: serviceDisplayName,
		Description: serviceDescription,
		StartType:   mgr.StartAutomatic,
	}, "service", "run", "--config", path)
	if err != nil {
		_ = eventlog.Remove(serviceName)
		return fmt.Errorf("creating the %s service: %w", serviceName, err)
	}
	defer s.Close()
	setRecovery(inv, s)
	fmt.Fprintf(inv.stdout, "installed the %s service (automatic start) running\n  %s service run --config %s\n"+
		"start it with: xoauthd service start\n", serviceName, exe, path)
	return nil
}

// setRecovery makes the service manager restart the service after a crash
// and after an exit with an error, and reads the actions back. Where the
// manager does not store a part, it warns with what that means and the
// service still installs: Wine 8 accepts SERVICE_CONFIG_FAILURE_ACTIONS
// but keeps nothing, and has no SERVICE_CONFIG_FAILURE_ACTIONS_FLAG
// ("Invalid level").
func setRecovery(inv *invocation, s *mgr.Service) {
	err := s.SetRecoveryActions(serviceRecovery, serviceResetPeriod)
	if err == nil {
		// Read back: a service manager may accept the call and store
		// nothing (Wine 8 does).
		stored, qerr := s.RecoveryActions()
		switch {
		case qerr != nil:
			err = fmt.Errorf("reading it back: %w", qerr)
		case !slices.Equal(stored, serviceRecovery):
			err = fmt.Errorf("the service manager keeps %d of %d restart actions", len(stored), len(serviceRecovery))
		}
	}
	if err != nil {
		fmt.Fprintf(inv.stderr, "warning: restart on failure is not confirmed (%v): xoauthd may not be "+
			"restarted when it fails; check services.msc, xoauthd, tab Recovery\n", err)
		return
	}
	if err := s.SetRecoveryActionsOnNonCrashFailures(true); err != nil {
		fmt.Fprintf(inv.stderr, "warning: the service manager did not store \"restart after an exit with an error\" (%v): "+
			"xoauthd is restarted after a crash, but not after it stopped with an error "+
			"(a configuration that does not load, a port in use)\n", err)
	}
}

// protectStateDirs restricts the default directory (%ProgramData%\xoauthd)
// to SYSTEM and Administrators when the configuration, the token store or
// its key lives there or below it, and asks for the same for any other directory that
// holds them (xoauthd does not change the ACL of a directory it did not
// choose).
func protectStateDirs(inv *invocation, path string, cfg *config.Config) error {
	home := filepath.Dir(defaultServiceConfig())
	dirs := []string{filepath.Dir(path), filepath.Dir(cfg.Store.Path)}
	if cfg.Store.KeyFile != "" {
		dirs = append(dirs, filepath.Dir(cfg.Store.KeyFile))
	}
	restricted, noted := false, map[string]bool{}
	for _, dir := range dirs {
		switch {
		case insideDir(dir, home): // the ACL is inherited below home
			if restricted {
				continue
			}
			if err := restrictDir(home); err != nil {
				return fmt.Errorf("restricting access to %s to SYSTEM and Administrators: %w", home, err)
			}
			restricted = true
		case !noted[strings.ToLower(dir)]:
			noted[strings.ToLower(dir)] = true
			fmt.Fprintf(inv.stdout, "note: make sure only SYSTEM and Administrators can read %s "+
				"(it holds the configuration, the token store or its key)\n", dir)
		}
	}
	return nil
}

// restrictDir gives dir (created when missing) an ACL that only LocalSystem
// and Administrators may use, replacing inherited entries on dir and
// everything below it.
func restrictDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	sd, err := windows.SecurityDescriptorFromString(stateDirSDDL)
	if err != nil {
		return err
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return err
	}
	return windows.SetNamedSecurityInfo(dir, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil)
}

// uninstallService stops the service when it runs, deletes it and its
// event log source; configuration and tokens stay.
func uninstallService(ctx context.Context, inv *invocation, m *mgr.Mgr) error {
	s, err := openService(m)
	if err != nil {
		return err
	}
	defer s.Close()
	if st, err := s.Query(); err == nil && st.State != svc.Stopped {
		if err := stopAndWait(ctx, s); err != nil {
			return err
		}
	}
	if err := s.Delete(); err != nil {
		return fmt.Errorf("deleting the %s service: %w", serviceName, err)
	}
	if err := eventlog.Remove(serviceName); err != nil {
		fmt.Fprintf(inv.stderr, "warning: removing the event log source: %v\n", err)
	}
	fmt.Fprintf(inv.stdout, "removed the %s service; its configuration and token store are kept (in %s unless installed with --config)\n",
		serviceName, filepath.Dir(defaultServiceConfig()))
	return nil
}

// startService starts the service and waits until it runs, or reports
// that it stopped at once (a configuration or listener problem).
func startService(ctx context.Context, inv *invocation, m *mgr.Mgr) error {
	s, err := openService(m)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Start(); err != nil {
		return fmt.Errorf("starting the %s service: %w", serviceName, err)
	}
	st, err := waitForState(ctx, s, svc.Running, serviceStartWait)
	if err != nil {
		return err
	}
	if st.State != svc.Running {
		return fmt.Errorf("the %s service stopped right after starting (exit code %d); the cause is in Event Viewer, "+
			"Windows Logs > Application, source %s", serviceName, exitCodeOf(st), serviceName)
	}
	fmt.Fprintf(inv.stdout, "the %s service is running\n", serviceName)
	return nil
}

// stopService asks the service to stop and waits until sessions drained.
func stopService(ctx context.Context, inv *invocation, m *mgr.Mgr) error {
	s, err := openService(m)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := stopAndWait(ctx, s); err != nil {
		return err
	}
	fmt.Fprintf(inv.stdout, "the %s service is stopped\n", serviceName)
	return nil
}

// openService opens the xoauthd service, saying how to install it when it
// is not.
func openService(m *mgr.Mgr) (*mgr.Service, error) {
	s, err := m.OpenService(serviceName)
	if errors.Is(err, windows.ERROR_SERVICE_DOES_NOT_EXIST) {
		return nil, fmt.Errorf("the %s service is not installed; run \"xoauthd service install\"", serviceName)
	}
	if err != nil {
		return nil, fmt.Errorf("opening the %s service: %w", serviceName, err)
	}
	return s, nil
}

// stopAndWait sends Stop and waits for the service to stop.
func stopAndWait(ctx context.Context, s *mgr.Service) error {
	if _, err := s.Control(svc.Stop); err != nil && !errors.Is(err, windows.ERROR_SERVICE_NOT_ACTIVE) {
		return fmt.Errorf("stopping the %s service: %w", serviceName, err)
	}
	if _, err := waitForState(ctx, s, svc.Stopped, serviceStopWait); err != nil {
		return err
	}
	return nil
}

// waitForState polls the service until it reaches want or stops, for at
// most limit.
func waitForState(ctx context.Context, s *mgr.Service, want svc.State, limit time.Duration) (svc.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(servicePoll)
	defer tick.Stop()
	for {
		st, err := s.Query()
		if err != nil {
			return st, fmt.Errorf("asking the %s service for its state: %w", serviceName, err)
		}
		if st.State == want || st.State == svc.Stopped {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("the %s service did not reach the expected state within %v (state %d); see Event Viewer, source %s",
				serviceName, limit, st.State, serviceName)
		case <-tick.C:
		}
	}
}

// exitCodeOf returns the exit code a stopped service reported.
func exitCodeOf(st svc.Status) uint32 {
	if st.Win32ExitCode == uint32(windows.ERROR_SERVICE_SPECIFIC_ERROR) {
		return st.ServiceSpecificExitCode
	}
	return st.Win32ExitCode
}

// runAsService runs serve under the service manager, with logs and errors
// in the event log. Started from a console it says what to run instead.
//
// Whether the service manager started xoauthd is found out by connecting
// to it (svc.Run), not by svc.IsWindowsService: that checks for session 0,
// and service managers that run services in another session (Wine runs
// them in session 1) would get no answer and time out the start (1053).
// From a console the connection fails at once with
// ERROR_FAILED_SERVICE_CONTROLLER_CONNECT.
func runAsService(ctx context.Context, inv *invocation, path string) int {
	// Windows sends services CTRL_LOGOFF_EVENT whenever someone logs off,
	// and the Go runtime turns it into SIGTERM: under the service manager,
	// only its Stop and Shutdown end xoauthd.
	signal.Ignore(syscall.SIGTERM)
	ctx = context.WithoutCancel(ctx)
	el, err := eventlog.Open(serviceName)
	if err != nil {
		// Only a console sees this; a service has nowhere to say why.
		return inv.fail(fmt.Errorf("opening the event log for source %s: %w", serviceName, err))
	}
	defer el.Close()
	h := &windowsService{ctx: ctx, inv: inv, path: path, sink: eventSink(el)}
	err = svc.Run(serviceName, h)
	if errors.Is(err, windows.ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) {
		fmt.Fprintf(inv.stderr, "xoauthd service run: only the Windows service manager starts this; "+
			"use \"xoauthd service start\", or run in this console: xoauthd serve --config %s\n", path)
		return exitUsage
	}
	if err != nil {
		_ = el.Error(eventError, fmt.Sprintf("running as the %s service: %v", serviceName, err))
		return exitFailure
	}
	return h.code
}

// eventSink writes records to the event log with the type of their level.
func eventSink(el *eventlog.Log) logSink {
	return func(level slog.Level, msg string) error {
		switch {
		case level >= slog.LevelError:
			return el.Error(eventError, msg)
		case level >= slog.LevelWarn:
			return el.Warning(eventWarning, msg)
		default:
			return el.Info(eventInfo, msg)
		}
	}
}

// windowsService is the svc.Handler: it runs serve until Stop or Shutdown.
type windowsService struct {
	ctx  context.Context
	inv  *invocation
	path string
	sink logSink
	code int // serve's exit status, set when Execute returns
}

// Execute runs serve under superviseService; Stop and Shutdown drain like
// SIGTERM does.
func (h *windowsService) Execute(_ []string, r <-chan svc.ChangeRequest, s chan<- svc.Status) (bool, uint32) {
	report := func(st serviceState) { s <- windowsStatus(st) }
	h.code = superviseService(h.ctx, r, classifyChange, report, h.serve)
	if h.code != exitOK {
		return true, uint32(h.code)
	}
	return false, 0
}

// serve loads the configuration and runs the daemon until ctx ends, with
// every log record and error message in the event log; started is called
// once the listeners are up.
func (h *windowsService) serve(ctx context.Context, started func()) int {
	inv := *h.inv
	inv.started = started
	inv.stdout = sinkWriter{level: slog.LevelInfo, sink: h.sink}
	inv.stderr = sinkWriter{level: slog.LevelError, sink: h.sink}
	cfg, err := config.Load(h.path)
	if err != nil {
		return inv.fail(fmt.Errorf("loading %s: %w; fix it (xoauthd validate --config %s) and start the service again", h.path, err, h.path))
	}
	return serveDaemon(ctx, &inv, cfg, newSinkLogger(cfg.Log, h.sink), defaultDrain)
}

// classifyChange maps a service manager request to what the service does.
func classifyChange(c svc.ChangeRequest) serviceControl {
	switch c.Cmd {
	case svc.Interrogate:
		return controlInterrogate
	case svc.Stop, svc.Shutdown:
		return controlStop
	default:
		return controlIgnore
	}
}

// windowsStatus is the status reported for st.
func windowsStatus(st serviceState) svc.Status {
	switch st {
	case serviceRunning:
		return svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown}
	case serviceStopping:
		return svc.Status{State: svc.StopPending, WaitHint: uint32(serviceStopWait.Milliseconds())}
	default:
		return svc.Status{State: svc.StartPending, WaitHint: uint32(serviceStartWait.Milliseconds())}
	}
}
