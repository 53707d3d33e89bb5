package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/xoauthd/xoauthd/config"
)

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// command is one subcommand. To add one, write its run function in its own
// file and add one line to commands; "xoauthd --help" lists it from there.
type command struct {
	name    string // what the user types after xoauthd
	summary string // one line for "xoauthd --help" and the command's --help
	run     func(ctx context.Context, inv *invocation) int
}

// commands is the subcommand table, in the order --help lists it. It is
// never modified at run time.
var commands = []command{
	{"serve", "run the IMAP, POP3 and SMTP listeners (SIGTERM drains and stops, SIGHUP reloads)", runServe},
	{"validate", "load the configuration and report every problem and warning with its line", runValidate},
	{"login", "sign an identity in (browser or --device) and store its tokens encrypted", runLogin},
	{"logout", "remove an identity's stored tokens", runLogout},
	{"check", "test each account end to end (config, token, IMAP, POP3, SMTP) and explain every failure", runCheck},
	{"demo", "try xoauthd in one command: a built-in identity provider and mail server behind the real proxy", runDemo},
	{"accounts", "list identities with token state, expiry, last refresh and last error", runAccounts},
	{"store", "migrate --to file|redis: copy every identity's tokens to the other store backend, no new sign-in", runStore},
	{"hash-password", "read a password (no echo) and print its argon2id hash for password_hash", runHashPassword},
	{"health", "exit 0 when the admin endpoint answers /healthz (or /readyz with --ready); for probes", runHealth},
	{"service", "install, uninstall, start or stop the Windows service (Windows only)", runService},
	{"version", "print the version, commit and Go version", runVersion},
}

func main() {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	ctx, release := stopOnSignals(sigs, os.Stderr, os.Exit)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	signal.Stop(sigs)
	release()
	os.Exit(code)
}

// run dispatches args (without the program name) to a subcommand and
// returns the exit status. ctx is cancelled on SIGINT and SIGTERM (a second
// one exits at once: stopOnSignals).
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	name, rest := args[0], args[1:]
	switch name {
	case "-h", "-help", "--help", "help":
		if name == "help" && len(rest) > 0 {
			name, rest = rest[0], []string{"--help"}
			break
		}
		usage(stdout)
		return exitOK
	case "-version", "--version":
		name = "version"
	}
	for i := range commands {
		if c := &commands[i]; c.name == name {
			inv := &invocation{cmd: c, args: rest, stdin: stdin, stdout: stdout, stderr: stderr}
			return c.run(ctx, inv)
		}
	}
	fmt.Fprintf(stderr, "xoauthd: unknown command %q\n\n", name)
	usage(stderr)
	return exitUsage
}

// usage prints the program's help with the command table.
func usage(w io.Writer) {
	width := len("help")
	for _, c := range commands {
		width = max(width, len(c.name))
	}
	var b strings.Builder
	b.WriteString("xoauthd lets legacy mail clients log in with a local user name and password\n" +
		"while it speaks OAuth 2.0 (SASL XOAUTH2) to Microsoft 365 or Gmail for them.\n\n" +
		"Usage:\n  xoauthd COMMAND [flags] [arguments]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-*s  %s\n", width, c.name, c.summary)
	}
	fmt.Fprintf(&b, "  %-*s  %s\n", width, "help", "show this help, or a command's: xoauthd help COMMAND")
	b.WriteString("\nCommands that read the configuration take --config FILE; the default is\n" +
		"$" + config.EnvConfig + ", else xoauthd.yaml in the working directory, else\n" +
		"xoauthd/xoauthd.yaml in the user configuration directory.\n" +
		"Run \"xoauthd COMMAND --help\" for a command's flags.\n")
	_, _ = io.WriteString(w, b.String())
}

// invocation is one run of a subcommand: its arguments (after its name)
// and the process's standard streams.
type invocation struct {
	cmd    *command
	args   []string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// started, when set, is called by serve once its listeners are up
	// (a service manager is then told "running").
	started func()
}

// flagSet returns the subcommand's flag set; argsUsage describes what
// follows the command name on the usage line, like "IDENTITY [--device]".
func (inv *invocation) flagSet(argsUsage string) *flag.FlagSet {
	fs := flag.NewFlagSet("xoauthd "+inv.cmd.name, flag.ContinueOnError)
	fs.SetOutput(inv.stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: xoauthd %s %s\n\n%s\n", inv.cmd.name, argsUsage, inv.cmd.summary)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintf(w, "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// configFlag adds --config FILE, defaulting to config.DefaultPath().
func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", config.DefaultPath(),
		"configuration `FILE` ($"+config.EnvConfig+", else ./xoauthd.yaml, else in the user configuration directory)")
}

// parse parses the invocation's arguments with fs. Flags may follow
// positional arguments ("login alice@contoso.com --device"); after "--"
// everything is positional. It returns the positional arguments, or ok false
// and the exit status: 0 after --help (usage on stdout), 2 on a usage error
// (message and usage on stderr).
func (inv *invocation) parse(fs *flag.FlagSet) (positional []string, code int, ok bool) {
	for _, a := range inv.args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(inv.stdout)
			fs.Usage()
			return nil, exitOK, false
		}
	}
	args := inv.args
	for {
		if err := fs.Parse(args); err != nil {
			return nil, exitUsage, false
		}
		rest := fs.Args()
		if consumed := args[:len(args)-len(rest)]; len(consumed) > 0 && consumed[len(consumed)-1] == "--" {
			return append(positional, rest...), exitOK, true
		}
		if len(rest) == 0 {
			return positional, exitOK, true
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// usageError reports a wrong invocation with the usage and returns 2.
func (inv *invocation) usageError(fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(inv.stderr, "xoauthd %s: %s\n", inv.cmd.name, fmt.Sprintf(format, args...))
	fs.Usage()
	return exitUsage
}

// fail reports err and returns 1.
func (inv *invocation) fail(err error) int {
	fmt.Fprintf(inv.stderr, "xoauthd %s: %v\n", inv.cmd.name, err)
	return exitFailure
}

// noArgs parses a command that takes flags only; ok false carries the exit
// status to return.
func (inv *invocation) noArgs(fs *flag.FlagSet) (code int, ok bool) {
	pos, code, ok := inv.parse(fs)
	if !ok {
		return code, false
	}
	if len(pos) > 0 {
		return inv.usageError(fs, "unexpected argument %q", pos[0]), false
	}
	return exitOK, true
}
