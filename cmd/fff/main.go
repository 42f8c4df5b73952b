// Command fff is fff's command-line interface.
//
// It carries the cluster commands (up, down, status, admin), the namespace
// commands (ls, du, stat, mkdir, rm, mv, ln, touch, chmod, chown), the data
// commands (put, get, cp, cat), the `ffr` command group, which packs,
// inspects, verifies, prints and unpacks FFRecord datasets on the local disk
// or in a cluster, and `version`.
//
// Exit status: 0 on success, 1 when a command failed (including a dataset
// that failed verification), 2 for usage errors (bad flags or arguments),
// 130 when interrupted.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// run executes the command line and returns the process exit status.
func run(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	root.SetArgs(negativeArgs(root, args))
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	name := "fff"
	if cmd != nil {
		name = cmd.CommandPath()
	}
	var ue *usageError
	var ee *exitError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(os.Stderr, "%s: %v (see '%s --help')\n", name, ue.err, name)
		return 2
	case errors.As(err, &ee):
		if ee.err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, ee.err)
		}
		return ee.code
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		fmt.Fprintf(os.Stderr, "%s: interrupted\n", name)
		return 130
	default:
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
}

func newRootCmd() *cobra.Command {
	var logLevel, logFormat string
	root := &cobra.Command{
		Use:           "fff",
		Short:         "fff: a distributed file system for AI training data",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          groupArgs,
		RunE:          groupRun,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return setupLogging(logLevel, logFormat)
		},
	}
	root.PersistentFlags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&logFormat, "log-format", defaultLogFormat(), "messages on stderr as text (fff: warning: …) or json lines (default from FFF_LOG_FORMAT)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	root.AddCommand(newVersionCmd(), newFFRCmd(), newUpCmd(), newDownCmd(), newStatusCmd(), newTopCmd(), newAdminCmd(), newLsCmd(), newDuCmd(), newStatCmd(), newMkdirCmd(), newRmCmd(), newMvCmd(), newLnCmd(), newTouchCmd(), newChmodCmd(), newChownCmd(), newPutCmd(), newGetCmd(), newCpCmd(), newFileCatCmd(), newBenchCmd(), newMountCmd(), newUmountCmd())
	return root
}

// usageError marks a mistake in the command line (exit status 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// exitError carries an exit status; err, if set, is printed as the one-line message.
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
func (e *exitError) Unwrap() error { return e.err }

// exactArgs is cobra.ExactArgs reporting a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return &usageError{err}
		}
		return nil
	}
}

// minArgs is cobra.MinimumNArgs reporting a usage error.
func minArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.MinimumNArgs(n)(cmd, args); err != nil {
			return &usageError{err}
		}
		return nil
	}
}

// groupArgs and groupRun serve commands that only group subcommands: without
// arguments they print help, with an unknown subcommand a usage error.
func groupArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("unknown command %q", args[0])
	}
	return nil
}

func groupRun(cmd *cobra.Command, args []string) error { return cmd.Help() }

// annNegativeArgs marks a command whose positional arguments may be
// negative numbers (fff ffr cat DS -1).
const annNegativeArgs = "fff/negative-args"

// negativeArgs lets a command marked with annNegativeArgs take arguments
// that look like negative numbers: pflag would read "-1" as the shorthand
// flag -1, so the command's positional arguments, in their order, are moved
// behind a "--" (flags and their values stay in front). Other command lines
// are returned as they are.
func negativeArgs(root *cobra.Command, args []string) []string {
	cmd, rest, err := root.Find(args)
	if err != nil || cmd.Annotations[annNegativeArgs] == "" {
		return args
	}
	var flags, pos []string
	neg := false
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		switch {
		case a == "--":
			pos = append(pos, rest[i+1:]...)
			i = len(rest)
		case isNegativeNumber(a):
			pos = append(pos, a)
			neg = true
		case len(a) > 1 && a[0] == '-':
			flags = append(flags, a)
			if flagTakesValue(cmd, a) && i+1 < len(rest) {
				i++
				flags = append(flags, rest[i])
			}
		default:
			pos = append(pos, a)
		}
	}
	if !neg {
		return args
	}
	path := strings.Fields(cmd.CommandPath())[1:] // without the root's name
	out := append(append(path, flags...), "--")
	return append(out, pos...)
}

// isNegativeNumber reports whether s is "-" and digits (with one '.').
func isNegativeNumber(s string) bool {
	if len(s) < 2 || s[0] != '-' || s[1] == '.' || strings.Count(s, ".") > 1 {
		return false
	}
	return strings.Trim(s[1:], "0123456789.") == ""
}

// flagTakesValue reports whether the flag argument a ("--name", "-n") is
// followed by its value as the next argument.
func flagTakesValue(cmd *cobra.Command, a string) bool {
	if strings.Contains(a, "=") {
		return false
	}
	switch {
	case strings.HasPrefix(a, "--"):
		if f := cmd.Flags().Lookup(a[2:]); f != nil {
			return f.NoOptDefVal == ""
		}
		if f := cmd.InheritedFlags().Lookup(a[2:]); f != nil {
			return f.NoOptDefVal == ""
		}
	case len(a) == 2:
		if f := cmd.Flags().ShorthandLookup(a[1:]); f != nil {
			return f.NoOptDefVal == ""
		}
		if f := cmd.InheritedFlags().ShorthandLookup(a[1:]); f != nil {
			return f.NoOptDefVal == ""
		}
	}
	return false
}
