package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/redisx"
)

// redisFlagNames are the source flags that say where Redis is; the Redis
// debug commands (publish, channels, ping, monitor) take these and the
// ones they name, not the SSE ones.
var redisFlagNames = []string{"redis", "cluster", "sentinel-master", "tls-ca", "tls-insecure"}

// registerRedisFlags adds to fs the Redis flags of src and the extra
// source flags named, exactly as SourceFlags defines them (usage reworded
// where given), so defaults and help stay in one place.
func registerRedisFlags(fs *pflag.FlagSet, src *SourceFlags, usage map[string]string, extra ...string) {
	all := pflag.NewFlagSet("source", pflag.ContinueOnError)
	src.Register(all)
	for _, name := range append(append([]string(nil), redisFlagNames...), extra...) {
		f := all.Lookup(name)
		if u, ok := usage[name]; ok {
			f.Usage = u
		}
		fs.AddFlag(f)
	}
}

// openRedis connects to the Redis that src names (the URL defaults of
// every command apply).
func openRedis(ctx context.Context, src *SourceFlags, getenv func(string) string, dial time.Duration) (*redisx.Client, error) {
	return redisx.Open(ctx, redisx.Options{
		URLs: src.redisURLs(getenv), Cluster: src.Cluster, SentinelMaster: src.SentinelMaster,
		TLSCA: src.TLSCA, TLSInsecure: src.TLSInsecure, DialTimeout: dial,
	})
}

// completionTimeout bounds how long shell completion waits for Redis.
const completionTimeout = time.Second

// ChannelCompletion completes a channel flag with the live server's
// channels (PUBSUB CHANNELS, or SHARDCHANNELS for shard) that start with
// what was typed, asked of the Redis that src names (flags given before
// the one completed count). It gives up after a second and offers
// nothing on any error: completion must never hang a shell or print.
// Register it with cmd.RegisterFlagCompletionFunc("channel", …).
func ChannelCompletion(src *SourceFlags, getenv func(string) string, shard bool) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		ctx := context.Background()
		if cmd != nil && cmd.Context() != nil {
			ctx = cmd.Context()
		}
		ctx, cancel := context.WithTimeout(ctx, completionTimeout)
		defer cancel()
		names, err := completeChannels(ctx, src, getenv, toComplete, shard)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

func completeChannels(ctx context.Context, src *SourceFlags, getenv func(string) string, prefix string, shard bool) ([]string, error) {
	type result struct {
		names []string
		err   error
	}
	// Cobra parses the flags twice when it completes, so repeatable
	// flags arrive doubled: one seed given twice would look like a cluster.
	one := *src
	one.Redis = slices.Compact(slices.Clone(src.Redis))
	done := make(chan result, 1)
	go func() {
		c, err := openRedis(ctx, &one, getenv, completionTimeout/2)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		names, err := c.ChannelNames(ctx, redisx.GlobQuote(prefix)+"*", shard)
		done <- result{names, err}
	}()
	select {
	case r := <-done:
		return r.names, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func newChannelsCmd(e *env) *cobra.Command {
	var src SourceFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "channels [GLOB]",
		Short: "Active channels with their subscriber counts, cluster-wide",
		Long: `channels lists the active Pub/Sub channels matching GLOB (default: all) with
their subscriber counts (PUBSUB CHANNELS and NUMSUB), the shard channels
(SHARDCHANNELS and SHARDNUMSUB) and the pattern subscriptions (NUMPAT).

In a Redis Cluster every node counts only its own subscribers: the counts are
summed over every node, and --json adds each node's own view under "nodes".`,
		Example: `  fanscope channels
  fanscope channels 'story:*' --json
  fanscope channels --cluster --redis redis://10.0.0.5:7000`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageError(fmt.Errorf("channels takes one GLOB at most, got %d arguments (quote the glob: 'story:*')", len(args)))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			glob := "*"
			if len(args) == 1 {
				glob = args[0]
			}
			return runChannels(cmd.Context(), e, &src, glob, asJSON)
		},
	}
	registerRedisFlags(cmd.Flags(), &src, nil)
	cmd.Flags().BoolVar(&asJSON, "json", false, `print one JSON object: {"channels": [{"channel", "subscribers", "shard"}], "numpat", "nodes"}`)
	return cmd
}

func runChannels(ctx context.Context, e *env, src *SourceFlags, glob string, asJSON bool) error {
	c, err := openRedis(ctx, src, e.getenv, 0)
	if err != nil {
		return err
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	got, err := c.Channels(cctx, glob)
	if err != nil {
		return err
	}
	if got.Channels == nil {
		got.Channels = []redisx.ChannelCount{}
	}
	if asJSON {
		b, err := json.Marshal(got)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(e.stdout, "%s\n", b)
		return err
	}
	return writeChannels(e, c.Target(), glob, got)
}

func writeChannels(e *env, target, glob string, got redisx.Channels) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', tabwriter.DiscardEmptyColumns)
	fmt.Fprintf(tw, "CHANNEL\tSUBSCRIBERS\tKIND\n")
	for _, ch := range got.Channels {
		kind := "channel"
		if ch.Shard {
			kind = "shard"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\n", feed.Escaped(ch.Channel), ch.Subscribers, kind)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	where := "on " + target
	if len(got.Nodes) > 1 {
		where = "summed over " + strconv.Itoa(len(got.Nodes)) + " nodes of " + target
	}
	if len(got.Channels) == 0 {
		fmt.Fprintf(e.stdout, "(no active channels match %s)\n", feed.Escaped(glob))
	}
	_, err := fmt.Fprintf(e.stdout, "%s, %s (NUMPAT), %s\n",
		count(len(got.Channels), "channel"), count(int(got.NumPat), "pattern"), strings.TrimSpace(where))
	return err
}

// registerChannelCompletion offers the live server's channel names for -c and -s.
func (f *SourceFlags) registerChannelCompletion(cmd *cobra.Command, getenv func(string) string) {
	_ = cmd.RegisterFlagCompletionFunc("channel", ChannelCompletion(f, getenv, false))
	_ = cmd.RegisterFlagCompletionFunc("shard-channel", ChannelCompletion(f, getenv, true))
}

// count is "1 channel", "3 channels".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
