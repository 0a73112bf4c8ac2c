package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/probes"
	"github.com/fanscope/fanscope/redisx"
	"github.com/fanscope/fanscope/ssex"
)

// probeOptions are the probe flags.
type probeOptions struct {
	Channel        string
	Count          int
	Interval       time.Duration
	Timeout        time.Duration
	Template       string
	SSEClients     int
	MaxP50         time.Duration
	MaxP99         time.Duration
	MinDelivery    float64
	MinSubscribers int64
	JSON           bool
	JUnit          string
}

// probeConnectWait is how long the SSE connections may go without another
// one connecting before the run gives up with exit 3 (--timeout when
// longer): 10,000 connections may take longer than this to open, one
// stuck connection may not. A variable so that a test can shorten it.
var probeConnectWait = 10 * time.Second

// Timing knobs of a probe run that are not flags.
const (
	// probeSettle is the pause between "every connection is up" and the
	// first probe: an SSE response can reach fanscope a moment before the
	// relay has registered the connection for fan-out.
	probeSettle = 250 * time.Millisecond
	// probeLinger is how long the run keeps listening after the last
	// delivery, so that a duplicate right behind it is still counted.
	probeLinger = 100 * time.Millisecond
	// maxSSEClients caps --sse-clients.
	maxSSEClients = 10000
)

func (o *probeOptions) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&o.Channel, "probe-channel", "", "publish probes to channel `NAME` (default: the first -c, else the first -s with SPUBLISH)")
	fs.IntVarP(&o.Count, "count", "n", 10, "probes to send")
	fs.DurationVar(&o.Interval, "interval", 200*time.Millisecond, "time between probes")
	fs.DurationVar(&o.Timeout, "timeout", 5*time.Second, "how long each probe may take to arrive on a path before it counts as lost")
	fs.StringVar(&o.Template, "template", probes.DefaultTemplate, "probe payload `T`; {{token}} (required), {{seq}} and {{sent_at}} are replaced")
	fs.IntVar(&o.SSEClients, "sse-clients", 1, "open `K` connections to each SSE endpoint (fan-out load)")
	fs.DurationVar(&o.MaxP50, "max-p50", 0, "fail when a path's median latency is above `D` (e.g. 50ms)")
	fs.DurationVar(&o.MaxP99, "max-p99", 0, "fail when a path's p99 latency is above `D`")
	fs.Float64Var(&o.MinDelivery, "min-delivery", 1.0, "fraction `F` of probes each path must deliver (0..1)")
	fs.Int64Var(&o.MinSubscribers, "min-subscribers", 0, "fail when PUBSUB NUMSUB of the probe channel is below `N` (fanscope's own subscription counts)")
	fs.BoolVar(&o.JSON, "json", false, "print the report as one JSON object on stdout")
	fs.StringVar(&o.JUnit, "junit", "", "also write a JUnit XML report to `FILE`, one test case per path")
}

func (o *probeOptions) budgets() probes.Budgets {
	return probes.Budgets{MaxP50: o.MaxP50, MaxP99: o.MaxP99, MinDelivery: o.MinDelivery, MinSubscribers: o.MinSubscribers}
}

func newProbeCmd(e *env) *cobra.Command {
	var src SourceFlags
	var opts probeOptions
	cmd := &cobra.Command{
		Use:   "probe [source flags] [probe flags]",
		Short: "Smoke probe: publish probes and check every path delivers them in budget",
		Long: `probe publishes -n probes to the probe channel and watches them arrive on
fanscope's own Redis subscription (path "redis") and on every SSE endpoint
(path "sse:NAME"). Each probe carries a token fsp-<run id>-<seq>; a delivery
matches when the token occurs anywhere in its data, so relays that re-wrap
or re-encode the payload still match. Use --template when the relay only
forwards the app's own message shape.

Latency runs on one monotonic clock from just before PUBLISH to the read of
the delivery's bytes. A probe not seen on a path within --timeout is lost.
With --sse-clients K the report also gives, per endpoint, the time until
the last of the K connections got each probe, and connections that missed
probes; a probe counts as delivered on that path when all K got it, and
--max-p50/--max-p99 hold for that last connection too.

The report is a table on stdout (or one JSON object with --json, and a
JUnit file with --junit). Exit status: 0 every check met; 1 a budget or
delivery check failed; 2 usage error; 3 a source could not be reached or
subscribed. An SSE connection whose attempts fail for max(--timeout, 10s)
ends the run with 3; one whose first request is still waiting for response
headers then is probed anyway (some servers send the headers with the first
event), and is 3 only if it never connects during the run.`,
		Example: `  fanscope probe -c story:published --sse app-1=http://localhost:8080/api/community/events
  fanscope probe -c story:published --sse http://app-1:8080/api/community/events --sse http://app-2:8080/api/community/events \
      --max-p99 100ms --min-subscribers 3 --junit probe.xml
  fanscope probe -c story:published --sse http://localhost:8080/api/community/events \
      --template '{"storyId":"{{token}}","title":"probe"}' --sse-clients 200 --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runProbe(cmd.Context(), e, src, opts)
		},
	}
	src.Register(cmd.Flags())
	opts.register(cmd)
	return cmd
}

// probeChannel picks the channel probes are published to, and whether it
// takes SPUBLISH.
func probeChannel(src SourceFlags, opts probeOptions) (channel string, shard bool, err error) {
	switch {
	case opts.Channel != "":
		return opts.Channel, slices.Contains(src.ShardChannels, opts.Channel), nil
	case len(src.Channels) > 0:
		return src.Channels[0], false, nil
	case len(src.ShardChannels) > 0:
		return src.ShardChannels[0], true, nil
	}
	return "", false, usageError(errors.New("probe needs a channel to publish to: give -c CHANNEL, -s SHARD-CHANNEL or --probe-channel NAME"))
}

func (o *probeOptions) validate() error {
	switch {
	case o.Count < 1:
		return usageError(fmt.Errorf("--count %d: send at least one probe", o.Count))
	case o.Interval < 0:
		return usageError(fmt.Errorf("--interval %v is negative", o.Interval))
	case o.Timeout <= 0:
		return usageError(fmt.Errorf("--timeout %v: must be positive", o.Timeout))
	case o.SSEClients < 1 || o.SSEClients > maxSSEClients:
		return usageError(fmt.Errorf("--sse-clients %d: want 1 to %d", o.SSEClients, maxSSEClients))
	}
	if err := probes.ValidateTemplate(o.Template); err != nil {
		return usageError(err)
	}
	if err := o.budgets().Validate(); err != nil {
		return usageError(err)
	}
	return nil
}

// runProbe is `fanscope probe`: open the sources, send the probes, report.
func runProbe(ctx context.Context, e *env, src SourceFlags, opts probeOptions) error {
	if err := opts.validate(); err != nil {
		return err
	}
	channel, shard, err := probeChannel(src, opts)
	if err != nil {
		return err
	}
	var extra []string
	if !shard && !slices.Contains(src.Channels, channel) && !matchedByPattern(src.Patterns, channel) {
		extra = []string{channel} // the "redis" path needs the probe channel subscribed exactly once
	}
	if opts.JUnit != "" {
		// Find a --junit in a missing directory before sending anything.
		if fi, err := os.Stat(filepath.Dir(opts.JUnit)); err != nil || !fi.IsDir() {
			return usageError(fmt.Errorf("--junit %s: its directory does not exist", opts.JUnit))
		}
	}

	s, err := OpenSession(ctx, SessionConfig{
		Sources:       src,
		SSEClients:    opts.SSEClients,
		Probe:         probes.Config{Template: opts.Template, Timeout: opts.Timeout, MatchKey: src.MatchKey},
		ExtraChannels: extra,
		NeedRedis:     true,
		Getenv:        e.getenv,
	})
	if err != nil {
		return err
	}
	if err := s.Start(ctx); err != nil {
		s.Close()
		return err
	}
	var progress io.Writer
	if !opts.JSON && e.isTerminal(e.stderr) {
		progress = e.stderr
	}
	rep, err := probeSession(ctx, s, probeRun{Channel: channel, Shard: shard, Opts: opts, Progress: progress, Warn: e.stderr})
	s.Close()
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return fmt.Errorf("probe interrupted before its report: %w", err)
		}
		if rep.RunID == "" {
			return err
		}
		// The run finished but a source never came up: report what was
		// seen, then exit with the source's status.
		if werr := writeProbeReport(e, &rep, opts); werr != nil && exitCode(werr) != exitCheckFailed {
			return werr
		}
		return err
	}
	return writeProbeReport(e, &rep, opts)
}

// matchedByPattern reports whether a PSUBSCRIBE glob already delivers
// channel (subscribing it again would make every probe a duplicate). Redis
// globs and path.Match agree on *, ? and [..] for channel names without '/'.
func matchedByPattern(patterns []string, channel string) bool {
	for _, p := range patterns {
		if ok, err := path.Match(p, channel); err == nil && ok {
			return true
		}
	}
	return false
}

// probeRun says what one probe run on an open session does.
type probeRun struct {
	Channel  string
	Shard    bool // SPUBLISH instead of PUBLISH
	Opts     probeOptions
	Progress io.Writer // nil: quiet
	Warn     io.Writer // warnings (stderr)
}

// probeSession runs the probes on a started session and returns the report:
// wait for every SSE connection, NUMSUB before, send the probes, wait for
// their deliveries (or the timeout), NUMSUB after. The demo calls it too.
func probeSession(ctx context.Context, s *Session, run probeRun) (probes.Report, error) {
	opts := run.Opts
	started := time.Now()
	wait := max(opts.Timeout, probeConnectWait)
	silent, err := awaitSSE(ctx, s, wait)
	if err != nil {
		return probes.Report{}, err
	}
	warn := run.Warn
	if warn == nil {
		warn = io.Discard
	}
	for _, c := range silent {
		fmt.Fprintf(warn, "fanscope: sse endpoint %s connection %d sent no response headers within %v; probing anyway (some servers send them with the first event)\n",
			c.Name(), c.Diagnostics().Conn, wait)
	}
	if len(s.Endpoints) > 0 {
		if err := sleepCtx(ctx, probeSettle); err != nil {
			return probes.Report{}, err
		}
	}
	in := probes.ReportInput{Channel: run.Channel}
	in.Subscribers, in.SubscribersByNode, err = probeSubscribers(ctx, s.Redis, run.Channel, run.Shard)
	if err != nil {
		return probes.Report{}, err
	}

	publish := s.Redis.Publish
	if run.Shard {
		publish = s.Redis.SPublish
	}
	eng := s.Engine
	next := time.Now()
	for i := 0; i < opts.Count; i++ {
		if i > 0 {
			next = next.Add(opts.Interval)
			if err := sleepUntil(ctx, s, next); err != nil {
				return probes.Report{}, err
			}
		}
		p := eng.Next(time.Now())
		eng.MarkSent(p.Seq, time.Now()) // after rendering, just before PUBLISH
		n, err := publish(ctx, run.Channel, p.Payload)
		if err != nil {
			return probes.Report{}, fmt.Errorf("send probe %d: %w", p.Seq, err)
		}
		in.Receivers.Observe(n, i == 0)
		if run.Progress != nil {
			fmt.Fprintf(run.Progress, "\rfanscope: probe %d/%d sent (%d receivers)", i+1, opts.Count, n)
		}
	}

	// Wait until every path has every probe, or the last one timed out.
	deadline := time.Now().Add(opts.Timeout + time.Millisecond)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) && eng.Pending(time.Now()) > 0 {
		select {
		case <-ctx.Done():
			return probes.Report{}, ctx.Err()
		case err := <-s.Err():
			return probes.Report{}, err
		case <-tick.C:
		}
	}
	if err := sleepCtx(ctx, min(probeLinger, time.Until(deadline))); err != nil {
		return probes.Report{}, err
	}
	if run.Progress != nil {
		fmt.Fprint(run.Progress, "\r\x1b[K")
	}
	in.SubscribersAfter, _, err = probeSubscribers(ctx, s.Redis, run.Channel, run.Shard)
	if err != nil {
		return probes.Report{}, err
	}
	in.Duration = time.Since(started)
	rep := eng.Report(time.Now(), in, opts.budgets())
	for _, c := range silent {
		if !connected(c) {
			return rep, notConnectedError(c, "never connected during the probe")
		}
	}
	return rep, nil
}

// waitSSE waits until every SSE connection connected once. A connection
// that does not within wait is exit 3, naming the endpoint; a refusal (401,
// 404, wrong Content-Type) is the source's own error.
func waitSSE(ctx context.Context, s *Session, wait time.Duration) error {
	silent, err := awaitSSE(ctx, s, wait)
	if err != nil {
		return err
	}
	if len(silent) > 0 {
		return notConnectedError(silent[0], fmt.Sprintf("did not connect within %v", wait))
	}
	return nil
}

// awaitSSE waits like waitSSE, except that connections whose first request
// is still waiting for the response headers when wait ends are returned
// rather than failed: some servers send the headers only with the first
// event, which only a probe will cause. The wait restarts whenever a
// connection connects, so it ends only when none has for wait.
func awaitSSE(ctx context.Context, s *Session, wait time.Duration) (silent []*ssex.Client, err error) {
	pending := slices.Clone(s.Endpoints)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		before := len(pending)
		if pending = slices.DeleteFunc(pending, connected); len(pending) == 0 {
			return nil, nil
		}
		if len(pending) < before {
			timer.Reset(wait)
		}
		select {
		case <-pending[0].Connected():
		case <-tick.C:
		case err := <-s.Err():
			return nil, err
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timer.C:
			for _, c := range pending {
				if connected(c) {
					continue
				}
				if d := c.Diagnostics(); d.State != feed.StateConnecting || d.Attempt > 1 {
					return nil, notConnectedError(c, fmt.Sprintf("did not connect within %v", wait))
				}
				silent = append(silent, c)
			}
			return silent, nil
		}
	}
}

func connected(c *ssex.Client) bool {
	select {
	case <-c.Connected():
		return true
	default:
		return false
	}
}

// notConnectedError is exit 3 naming the endpoint, its connection and why.
func notConnectedError(c *ssex.Client, what string) error {
	d := c.Diagnostics()
	why := d.State
	if d.LastError != "" {
		why += ": " + d.LastError
	}
	return exitWith(exitUnreachable, fmt.Errorf("sse endpoint %s (%s) connection %d %s (%s)", d.Name, d.URL, d.Conn, what, why))
}

// probeSubscribers is PUBSUB NUMSUB (or SHARDNUMSUB) of the probe channel,
// with the per-node counts in a Cluster.
func probeSubscribers(ctx context.Context, c *redisx.Client, channel string, shard bool) (map[string]int64, map[string]map[string]int64, error) {
	if !shard {
		in, err := c.Introspect(ctx, redisx.Subscription{Channels: []string{channel}})
		if err != nil {
			return nil, nil, fmt.Errorf("count subscribers of %s: %w", channel, err)
		}
		var byNode map[string]map[string]int64
		if len(in.ByNode) > 1 {
			byNode = in.ByNode
		}
		return map[string]int64{channel: in.NumSub[channel]}, byNode, nil
	}
	in, err := c.Introspect(ctx, redisx.Subscription{ShardChannels: []string{channel}})
	if err != nil {
		return nil, nil, fmt.Errorf("count shard subscribers of %s: %w", channel, err)
	}
	return map[string]int64{channel: in.ShardNumSub[channel]}, nil, nil
}

// writeProbeReport prints the report (table or JSON), writes --junit, and
// turns a failed check into exit 1.
func writeProbeReport(e *env, rep *probes.Report, opts probeOptions) error {
	if opts.JSON {
		enc := json.NewEncoder(e.stdout)
		if err := enc.Encode(rep); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
		for _, f := range rep.Failures {
			fmt.Fprintf(e.stderr, "fanscope: FAIL %s\n", f)
		}
	} else if err := rep.WriteText(e.stdout); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if opts.JUnit != "" {
		f, err := os.Create(opts.JUnit)
		if err != nil {
			return fmt.Errorf("write junit report: %w", err)
		}
		werr := rep.WriteJUnit(f)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return fmt.Errorf("write junit report %s: %w", opts.JUnit, werr)
		}
	}
	if !rep.Pass {
		return &quietError{code: exitCheckFailed}
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error { return sleepOr(ctx, d, nil) }

// sleepUntil waits until at, returning early with a source's fatal error.
func sleepUntil(ctx context.Context, s *Session, at time.Time) error {
	return sleepOr(ctx, time.Until(at), s.Err())
}

// sleepOr waits d, returning early when ctx ends or an error arrives on
// errs (nil: none can).
func sleepOr(ctx context.Context, d time.Duration, errs <-chan error) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-errs:
		return err
	case <-t.C:
		return nil
	}
}
