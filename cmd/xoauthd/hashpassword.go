package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/xoauthd/xoauthd/internal/passhash"
)

// maxPasswordLen bounds the password hash-password reads.
const maxPasswordLen = 1024

// runHashPassword reads a password (from the terminal without echo, asking
// twice, or as one line from stdin when it is not a terminal) and prints its
// argon2id PHC string for an account's password_hash.
func runHashPassword(_ context.Context, inv *invocation) int {
	fs := inv.flagSet("< password-file")
	if code, ok := inv.noArgs(fs); !ok {
		return code
	}
	password, err := readPassword(inv.stdin, inv.stderr)
	if err != nil {
		return inv.fail(err)
	}
	phc, err := passhash.Hash(password)
	if err != nil {
		return inv.fail(err)
	}
	fmt.Fprintln(inv.stdout, phc)
	return exitOK
}

// readPassword reads the password from a terminal or a pipe and refuses an
// empty or overlong one.
func readPassword(stdin io.Reader, prompts io.Writer) (string, error) {
	var password string
	var err error
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		password, err = readPasswordTerminal(int(f.Fd()), prompts)
	} else {
		password, err = readPasswordLine(stdin)
	}
	switch {
	case err != nil:
		return "", err
	case password == "":
		return "", errors.New("refusing an empty password; type one, or pipe it in: echo 'pass' | xoauthd hash-password")
	case len(password) > maxPasswordLen:
		return "", fmt.Errorf("the password is longer than %d bytes", maxPasswordLen)
	}
	return password, nil
}

// readPasswordTerminal prompts twice with echo off and compares.
func readPasswordTerminal(fd int, prompts io.Writer) (string, error) {
	var entries [2]string
	for i, prompt := range []string{"Password: ", "Repeat password: "} {
		fmt.Fprint(prompts, prompt)
		b, err := term.ReadPassword(fd)
		fmt.Fprintln(prompts)
		if err != nil {
			return "", fmt.Errorf("reading password from the terminal: %w", err)
		}
		entries[i] = string(b)
	}
	if entries[0] != entries[1] {
		return "", errors.New("the two passwords differ; run xoauthd hash-password again")
	}
	return entries[0], nil
}

// readPasswordLine reads the first line of r (without its line ending),
// at most maxPasswordLen bytes.
func readPasswordLine(r io.Reader) (string, error) {
	br := bufio.NewReaderSize(io.LimitReader(r, maxPasswordLen+2), maxPasswordLen+2)
	line, err := br.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading password from stdin: %w", err)
	}
	// A line longer than maxPasswordLen comes back cut at maxPasswordLen+2
	// bytes, which readPassword refuses as too long.
	return strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"), nil
}
