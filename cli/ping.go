package cli

import (
	"github.com/fanscope/fanscope/internal/netx"

	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/spf13/cobra"
)

type pingOptions struct {
	Count    int
	Interval time.Duration
	JSON     bool
}

func newPingCmd(e *env) *cobra.Command {
	var src SourceFlags
	var opts pingOptions
	cmd := &cobra.Command{
		Use:   "ping [-n N]",
		Short: "PING round trips to Redis: min / p50 / max, like redis-cli --latency",
		Long: `ping sends N PINGs (one every --interval) to every node that takes commands
(the server, the Sentinel primary, or every Cluster node) and prints the
round trips: min, p50, avg and max per node.

Exit status 3 when Redis cannot be reached, with the reason (refused,
unknown host, wrong password, TLS, no answer in time).`,
		Example: `  fanscope ping
  fanscope ping -n 100 --interval 10ms --redis redis://10.0.0.5:6379
  fanscope ping --cluster --redis redis://10.0.0.5:7000 --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPing(cmd.Context(), e, &src, opts)
		},
	}
	registerRedisFlags(cmd.Flags(), &src, nil)
	cmd.Flags().IntVarP(&opts.Count, "count", "n", 10, "round trips per node (`N`)")
	cmd.Flags().DurationVar(&opts.Interval, "interval", 100*time.Millisecond, "time between round trips")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print one JSON object with the figures per node (milliseconds)")
	return cmd
}

// pingStats are one node's round trips, in milliseconds.
type pingStats struct {
	Node  string  `json:"node"`
	Count int     `json:"count"`
	Min   float64 `json:"min_ms"`
	P50   float64 `json:"p50_ms"`
	Avg   float64 `json:"avg_ms"`
	Max   float64 `json:"max_ms"`
}

// summarize turns round trips into min / p50 (nearest rank) / avg / max.
func summarize(node string, rtts []time.Duration) pingStats {
	s := pingStats{Node: node, Count: len(rtts)}
	if len(rtts) == 0 {
		return s
	}
	sorted := slices.Clone(rtts)
	slices.Sort(sorted)
	var sum time.Duration
	for _, d := range sorted {
		sum += d
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	s.Min, s.Max = ms(sorted[0]), ms(sorted[len(sorted)-1])
	s.P50 = ms(sorted[(len(sorted)+1)/2-1])
	s.Avg = ms(sum / time.Duration(len(sorted)))
	return s
}

func runPing(ctx context.Context, e *env, src *SourceFlags, opts pingOptions) error {
	if opts.Count < 1 {
		return usageError(fmt.Errorf("--count %d: ping at least once", opts.Count))
	}
	if opts.Interval < 0 {
		return usageError(fmt.Errorf("--interval %v must not be negative", opts.Interval))
	}
	c, err := openRedis(ctx, src, e.getenv, 0)
	if err != nil {
		return err
	}
	defer c.Close()
	rtts := map[string][]time.Duration{}
	var nodes []string
	var failed error
	for i := 0; i < opts.Count; i++ {
		if i > 0 && !netx.Sleep(ctx, opts.Interval) {
			break
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		got, err := c.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			failed = err
			break
		}
		for _, r := range got {
			if _, ok := rtts[r.Node]; !ok {
				nodes = append(nodes, r.Node)
			}
			rtts[r.Node] = append(rtts[r.Node], r.RTT)
		}
	}
	slices.Sort(nodes)
	var stats []pingStats
	for _, n := range nodes {
		stats = append(stats, summarize(n, rtts[n]))
	}
	if opts.JSON {
		out := struct {
			Target string      `json:"target"`
			Nodes  []pingStats `json:"nodes"`
			Error  string      `json:"error,omitempty"`
		}{Target: c.Target(), Nodes: stats}
		if out.Nodes == nil {
			out.Nodes = []pingStats{}
		}
		if failed != nil {
			out.Error = failed.Error()
		}
		b, _ := json.Marshal(out)
		fmt.Fprintf(e.stdout, "%s\n", b)
	} else {
		for _, s := range stats {
			fmt.Fprintf(e.stdout, "%s: %d round trips, min %.3f ms, p50 %.3f ms, avg %.3f ms, max %.3f ms\n",
				s.Node, s.Count, s.Min, s.P50, s.Avg, s.Max)
		}
	}
	return failed
}
