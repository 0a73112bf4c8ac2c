// Package cli defines fanscope's commands and flags and wires the parts
// (sources, fan-in, probe engine, consumers) together for each command.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/charmbracelet/x/term"
	"github.com/spf13/cobra"
)

// Version is set at build time with -ldflags "-X github.com/fanscope/fanscope/cli.Version=v1.2.3".
var Version = ""

// defaultMemoryLimit is the soft memory limit unless GOMEMLIMIT is set.
const defaultMemoryLimit = 384 << 20

// env is what a command may touch of the outside world; tests fill it in.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

// isTerminal reports whether w is a terminal (watch falls back to tail otherwise).
func (e *env) isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(f.Fd())
}

// Main runs fanscope with args and returns the process exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv}
	if e.getenv("GOMEMLIMIT") == "" {
		// Every buffer is bounded in bytes (the record queue, the ring, the
		// TUI's stream), but with payloads of megabytes the collector's
		// headroom (and tail's GOGC=400) would still let the heap run to
		// gigabytes; a soft limit makes it collect harder instead.
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	return run(ctx, e, args)
}

func run(ctx context.Context, e *env, args []string) int {
	root := newRootCmd(e)
	root.SetArgs(args)
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	code := exitCode(err)
	var quiet *quietError
	if !errors.As(err, &quiet) {
		fmt.Fprintf(e.stderr, "fanscope: %v\n", err)
		if code == 2 {
			fmt.Fprintln(e.stderr, "Run 'fanscope --help' (or 'fanscope COMMAND --help') for usage.")
		}
	}
	return code
}

func newRootCmd(e *env) *cobra.Command {
	watch := newWatchCmd(e)
	root := &cobra.Command{
		Use:   "fanscope",
		Short: "Watch a Redis Pub/Sub → SSE fan-out pipeline from both ends at once",
		Long: `fanscope watches a real-time fan-out pipeline from both ends at once: the Redis
Pub/Sub channels a backend publishes to, and the Server-Sent-Events endpoints
that relay those messages to browsers. It shows live traffic, subscriber
counts, publish-to-delivery latency and connection health, injects test
publishes, and runs the same checks as a scripted smoke probe.

With no command, fanscope runs 'watch' (the terminal UI).

Try it with nothing installed:   fanscope demo
Against your own pipeline:       fanscope -c story:published --sse app-1=http://localhost:8080/api/community/events
A smoke probe for CI:            fanscope probe -c story:published --sse http://localhost:8080/api/community/events --max-p99 100ms

Exit status: 0 ok; 1 a budget or delivery check failed; 2 usage or configuration
error; 3 a source could not be reached or subscribed.`,
		Args:              noArgs,
		SilenceErrors:     true,
		SilenceUsage:      true,
		RunE:              watch.RunE,
		Version:           versionString(),
		DisableAutoGenTag: true,
	}
	root.Flags().AddFlagSet(watch.Flags())
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	root.SetVersionTemplate("{{.Version}}\n")
	root.AddCommand(watch, newTailCmd(e), newProbeCmd(e), newServeCmd(e), newDemoCmd(e), newRelayCmd(e), newVersionCmd(e),
		newPublishCmd(e), newChannelsCmd(e), newPingCmd(e), newMonitorCmd(e))
	for _, c := range root.Commands() {
		c.SilenceErrors, c.SilenceUsage = true, true
		c.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	}
	return root
}

// noArgs rejects stray arguments as a usage error, naming them.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		if cmd.HasSubCommands() {
			return usageError(fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath()))
		}
		return usageError(fmt.Errorf("unexpected argument %q", args[0]))
	}
	return nil
}

func newVersionCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the fanscope version",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintln(e.stdout, versionString())
			return err
		},
	}
}

func versionString() string {
	v := Version
	if v == "" {
		v = "(devel)"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
			v = bi.Main.Version
		}
	}
	return fmt.Sprintf("fanscope %s %s %s/%s", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
