// Command alipayctl is the ISV engineer's tool for Alipay notifications:
// keys, a test PKI, certificate SNs, signing and sending notifications,
// telling why one does not verify, and receiving the events the gateway
// forwards. It shares the gateway's internal packages.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// command is one subcommand.
type command struct {
	name, summary string
	run           func(args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"keys", "make an RSA2 key pair in the formats the Alipay console uses", runKeys},
		{"certs", "make a test PKI shaped like Alipay's certificate mode", runCerts},
		{"sn", "print the Alipay SN of a cert, or the root SN of a root bundle", runSN},
		{"send", "sign a notification as Alipay does and post it to a gateway", runSend},
		{"verify", "tell whether a captured notification verifies and, if not, why", runVerify},
		{"listen", "receive the gateway's signed events (Standard Webhooks), verify and print them", runListen},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// exitError ends a command with a status other than 1; a nil err prints
// nothing.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

// usageError is a mistake in the command line: exit status 2.
func usageError(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(args[1:], stdout, stderr)
			if err == nil || errors.Is(err, flag.ErrHelp) {
				return 0
			}
			code := 1
			var ee *exitError
			if errors.As(err, &ee) {
				code = ee.code
				if ee.err == nil {
					return code
				}
			}
			// One line, always.
			msg := strings.Join(strings.Fields(err.Error()), " ")
			fmt.Fprintf(stderr, "alipayctl %s: %s\n", c.name, msg)
			return code
		}
	}
	fmt.Fprintf(stderr, "alipayctl: unknown command %q (see alipayctl --help)\n", args[0])
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: alipayctl COMMAND [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nalipayctl COMMAND --help shows a command's flags and an example.")
}

// flagSet is a flag.FlagSet whose --help prints the usage line, the flags
// and an example, whose errors are one line (no usage dump), and whose
// Parse accepts flags after positional arguments ("sn FILE", "certs DIR
// --app-id ID").
type flagSet struct {
	*flag.FlagSet
	help func()
	args []string
}

// newFlags returns a flag set whose --help prints usage and an example.
func newFlags(name, usageLine, example string, stderr io.Writer) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flagSet{FlagSet: fs, help: func() {
		fmt.Fprintf(stderr, "usage: alipayctl %s\n\nflags:\n", usageLine)
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		fmt.Fprintf(stderr, "\nexample:\n  %s\n", example)
	}}
}

// Parse parses flags and positional arguments in any order ("--" ends the
// flags). On --help it prints the help and returns flag.ErrHelp.
func (f *flagSet) Parse(args []string) error {
	f.args = nil
	for {
		err := f.FlagSet.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			f.help()
			return err
		}
		if err != nil {
			return usageError("%v (see alipayctl %s --help)", err, f.Name())
		}
		rest := f.FlagSet.Args()
		if len(rest) == 0 {
			return nil
		}
		// flag stops at the first non-flag, or after "--".
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			f.args = append(f.args, rest...)
			return nil
		}
		f.args = append(f.args, rest[0])
		args = rest[1:]
	}
}

// parseFlagsOnly parses a command line that takes flags and no positional
// argument: one is a usage error.
func (f *flagSet) parseFlagsOnly(args []string) error {
	if err := f.Parse(args); err != nil {
		return err
	}
	if f.NArg() > 0 {
		return usageError("unexpected argument %q", f.Arg(0))
	}
	return nil
}

// Args returns the positional arguments.
func (f *flagSet) Args() []string { return f.args }

// NArg returns the number of positional arguments.
func (f *flagSet) NArg() int { return len(f.args) }

// Arg returns the i-th positional argument, or "".
func (f *flagSet) Arg(i int) string {
	if i < 0 || i >= len(f.args) {
		return ""
	}
	return f.args[i]
}
