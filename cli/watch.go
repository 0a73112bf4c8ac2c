package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fanscope/fanscope/redisx"
	"github.com/fanscope/fanscope/session"
	"github.com/fanscope/fanscope/tui"
)

// WatchOptions are the watch flags.
type WatchOptions struct {
	// Buffer is how many records the stream keeps (and the session ring
	// holds for the TUI).
	Buffer int
	// AllowPublish publishes to a Redis that is not on loopback without
	// asking first.
	AllowPublish bool
	// ProbeChannel is where x and X publish probes (default: the first -c,
	// else the first -s).
	ProbeChannel string
	// ProbeInterval is the time between probes while X is on.
	ProbeInterval time.Duration
	// Probing starts with continuous probing on (as if X was pressed once
	// every endpoint connection is up).
	Probing bool

	programOptions []tea.ProgramOption // tests: a fixed window size
}

// Defaults of the watch flags.
const (
	defaultProbeInterval = time.Second
	introspectEvery      = 2 * time.Second
)

func (o *WatchOptions) register(fs *pflag.FlagSet) {
	fs.IntVar(&o.Buffer, "buffer", tui.DefaultBuffer, "records the live stream keeps (`N`)")
	fs.BoolVar(&o.AllowPublish, "allow-publish", false, "publish (P, x, X) to a Redis that is not on loopback without asking first")
	fs.StringVar(&o.ProbeChannel, "probe-channel", "", "where x/X publish probes: channel `NAME` (default: the first -c, else the first -s)")
	fs.DurationVar(&o.ProbeInterval, "probe-interval", defaultProbeInterval, "time between probes while continuous probing (X) is on")
}

func (o *WatchOptions) validate() error {
	switch {
	case o.Buffer < 1 || o.Buffer > tui.MaxBuffer:
		return usageError(fmt.Errorf("--buffer %d: keep 1 to %d records", o.Buffer, tui.MaxBuffer))
	case o.ProbeInterval <= 0:
		return usageError(fmt.Errorf("--probe-interval %v: must be positive", o.ProbeInterval))
	}
	return nil
}

func newWatchCmd(e *env) *cobra.Command {
	var src SourceFlags
	var opts WatchOptions
	cmd := &cobra.Command{
		Use:   "watch [source flags] [watch flags]",
		Short: "Watch Redis and the delivery endpoints live in a terminal UI (the default command)",
		Long: `watch shows both ends of the pipeline live: a header with the targets and the
overall health (naming the reason of every state that is not healthy), the
sources (each Redis subscription with its subscriber count and rate, each
endpoint with its state, HTTP status, reconnects and time since the last event
and keep-alive), the merged stream of records, probe latency per path, and a
radar of slow Pub/Sub subscribers (output buffer against the pubsub limit).

watch starts even when Redis or an endpoint is down, and keeps retrying: the
header says why each one is not up, and turns healthy when the cause is gone.

Keys: ? help, q quit, tab/shift+tab panes, j k g G move, PgUp/PgDn and the
mouse wheel page, / filter (substring in any case; a leading ~ makes it a
regexp; / again edits it; esc clears), space pause, enter details, c clear
(also forgets probe losses), w wrap, P publish, x probe, X continuous probes,
y copy payload (OSC 52), ctrl+s save the stream as NDJSON.

Publishing (P, x, X) to a Redis that is not on loopback asks for confirmation
unless --allow-publish is given. When stdout is not a terminal, watch prints
what tail would.`,
		Example: `  fanscope -c story:published --sse app-1=http://localhost:8080/api/community/events
  fanscope watch --redis redis://127.0.0.1:6379 -p 'story:*' --buffer 50000`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runWatchCmd(cmd.Context(), e, src, opts)
		},
	}
	src.Register(cmd.Flags())
	src.registerChannelCompletion(cmd, e.getenv)
	opts.register(cmd.Flags())
	return cmd
}

// runWatchCmd is `fanscope watch`: the TUI on a terminal, tail otherwise.
func runWatchCmd(ctx context.Context, e *env, src SourceFlags, opts WatchOptions) error {
	if err := opts.validate(); err != nil {
		return err
	}
	if !e.isTerminal(e.stdout) {
		return runTail(ctx, e, src, tailOptions{})
	}
	cfg, err := watchSessionConfig(src, opts, e.getenv)
	if err != nil {
		return err
	}
	if cfg.Monitor {
		fmt.Fprintf(e.stderr, "fanscope: warning: %s\n", redisx.MonitorCostWarning)
	}
	s, err := session.Open(ctx, cfg)
	if err != nil {
		return err
	}
	if err := s.Start(ctx); err != nil {
		s.Close()
		return err
	}
	err = runWatch(ctx, s, opts, e.stdin, e.stdout, e.stderr)
	s.Close()
	return err
}

// watchSessionConfig is the session watch needs: a ring for the TUI,
// introspection, the probe channel, and sources that are retried when
// they are down at start.
func watchSessionConfig(src SourceFlags, opts WatchOptions, getenv func(string) string) (session.Config, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	cfg, err := src.sessionConfig(getenv, false)
	if err != nil {
		return cfg, err
	}
	cfg.ProbeChannel, cfg.ProbeShard = session.ProbeTarget(opts.ProbeChannel, cfg.Subscription)
	cfg.ProbeInterval = opts.ProbeInterval
	cfg.RingSize = max(opts.Buffer, 1024)
	cfg.Introspect = introspectEvery
	cfg.KeepRetrying = true
	return cfg, nil
}

// runWatch runs the TUI on a started session until the user quits or ctx
// ends. It returns a fatal source error seen while running (an endpoint
// answering 401, say), so the exit status says what went wrong.
func runWatch(ctx context.Context, s *session.Session, opts WatchOptions, stdin io.Reader, stdout, stderr io.Writer) error {
	if opts.Buffer <= 0 {
		opts.Buffer = tui.DefaultBuffer
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b := &watchBackend{ctx: ctx, s: s}
	if opts.Probing {
		go func() {
			// A probe sent before the relay registered a connection would
			// count as lost on that path.
			if s.WaitConnected(ctx, 10*time.Second) == nil && session.Sleep(ctx, session.ProbeSettle) == nil {
				_ = s.SetProbing(true)
			}
		}()
	}
	channel, _ := s.ProbeTarget()
	if channel == "" {
		channel = firstOf(s.Subscription().Channels)
	}
	m := tui.New(tui.Options{Backend: b, Buffer: opts.Buffer, AllowPublish: opts.AllowPublish, Channel: channel})
	p := tea.NewProgram(m, append([]tea.ProgramOption{tea.WithContext(ctx), tea.WithInput(stdin), tea.WithOutput(stdout)}, opts.programOptions...)...)

	var fatal error
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case err := <-s.Err():
			b.setFatal(err)
			fatal = err
		case <-ctx.Done():
		}
	}()
	_, err := p.Run()
	cancel()
	<-done
	switch {
	case err != nil && (errors.Is(err, tea.ErrInterrupted) || errors.Is(err, tea.ErrProgramKilled)) && !errors.Is(err, tea.ErrProgramPanic):
		err = nil // ctrl+c, SIGINT or SIGTERM: a normal end
	case err != nil:
		return fmt.Errorf("run the terminal UI: %w", err)
	}
	if n := s.Dropped(); n > 0 {
		fmt.Fprintf(stderr, "fanscope: %d records were dropped because the fan-in could not keep up\n", n)
	}
	return fatal
}

func firstOf(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}
