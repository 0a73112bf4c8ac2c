package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/redisx"
)

func newMonitorCmd(e *env) *cobra.Command {
	var src SourceFlags
	var opts tailOptions
	cmd := &cobra.Command{
		Use:   "monitor [-c CHANNEL] [-p GLOB] [tail flags]",
		Short: "Who publishes: MONITOR filtered to PUBLISH and SPUBLISH",
		Long: `monitor runs MONITOR on its own connection (one per primary in a Cluster) and
prints every PUBLISH and SPUBLISH, to the channels given with -c, -s and -p
when any are, with the publisher's address, its CLIENT SETNAME name (from
CLIENT LIST) and the server's timestamp. Payloads are decoded back from
MONITOR's quoting to their exact bytes (--json gives data_b64 for those that
are not UTF-8).

MONITOR streams every command the server runs to fanscope: on a busy Redis it
costs about half the server's throughput. A warning says so on stderr first.

Exit status 3 when Redis cannot be reached, when an ACL refuses MONITOR
(NOPERM), or when MONITOR is disabled or renamed on the server.`,
		Example: `  fanscope monitor -c story:published
  fanscope monitor -p 'story:*' --json --duration 1m
  fanscope monitor --cluster --redis redis://10.0.0.5:7000 -n 10`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runMonitor(cmd.Context(), e, &src, opts)
		},
	}
	registerRedisFlags(cmd.Flags(), &src, map[string]string{
		"channel":       "show only publishes to channel `NAME` (repeatable)",
		"pattern":       "show only publishes to channels matching `GLOB` (repeatable)",
		"shard-channel": "show only publishes to shard channel `NAME` (repeatable)",
	}, "channel", "pattern", "shard-channel")
	opts.register(cmd)
	cmd.Flags().Lookup("count").Usage = "stop after `N` publishes"
	src.registerChannelCompletion(cmd, e.getenv)
	return cmd
}

func runMonitor(ctx context.Context, e *env, src *SourceFlags, opts tailOptions) error {
	if opts.Count < 0 || opts.Duration < 0 {
		return usageError(fmt.Errorf("--count and --duration must not be negative"))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if opts.Duration > 0 {
		ctx, cancel = context.WithTimeout(ctx, opts.Duration)
		defer cancel()
	}
	c, err := openRedis(ctx, src, e.getenv, 0)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(e.stderr, "fanscope: warning: %s\n", redisx.MonitorCostWarning)
	m := c.NewMonitor(redisx.MonitorFilter{
		Channels: append(append([]string(nil), src.Channels...), src.ShardChannels...),
		Patterns: src.Patterns,
	})
	q := feed.NewQueue(0)
	runErr := make(chan error, 1)
	go func() {
		runErr <- m.Run(ctx, q)
		cancel() // a refused MONITOR ends the printing too
	}()
	p := newTailPrinter(e.stdout, tailOptions{JSON: opts.JSON, NoState: opts.NoState}, cancel)
	shown := 0
	var spare []feed.Record
	for shown < opts.Count || opts.Count == 0 {
		batch := q.Take(ctx, spare)
		if batch == nil {
			break
		}
		if opts.Count > 0 {
			// Print up to the Count-th publish and stop there.
			for i := range batch {
				if batch[i].Kind == feed.KindPublish {
					shown++
					if shown == opts.Count {
						batch = batch[:i+1]
						cancel()
						break
					}
				}
			}
		}
		p.print(batch)
		clear(batch)
		spare = batch
	}
	fatal := <-runErr
	if err := p.flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	if n := q.Dropped(); n > 0 {
		fmt.Fprintf(e.stderr, "fanscope: %d records were dropped because output could not keep up\n", n)
	}
	return fatal
}
