package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fanscope/fanscope/probes"
	"github.com/fanscope/fanscope/session"
)

// probeOptions are the probe flags.
type probeOptions struct {
	probeFlags
	Count    int
	Interval time.Duration
	JSON     bool
	JUnit    string
}

// probeFlags are what probe and serve share: where probes go, what they
// look like, and the budgets they are judged by.
type probeFlags struct {
	Channel        string
	Timeout        time.Duration
	Template       string
	SSEClients     int
	MaxP50         time.Duration
	MaxP99         time.Duration
	MinDelivery    float64
	MinSubscribers int64
}

// register adds the shared probe flags; over says what the budgets are
// judged over ("" for a run, "in the window" for serve).
func (o *probeFlags) register(fs *pflag.FlagSet, over string) {
	if over != "" {
		over = " " + over
	}
	fs.StringVar(&o.Channel, "probe-channel", "", "publish probes to channel `NAME` (default: the first -c, else the first -s with SPUBLISH)")
	fs.DurationVar(&o.Timeout, "timeout", probes.DefaultTimeout, "how long each probe may take to arrive on a path before it counts as lost")
	fs.StringVar(&o.Template, "template", probes.DefaultTemplate, "probe payload `T`; {{token}} (required, delimited), {{seq}} and {{sent_at}} are replaced")
	fs.IntVar(&o.SSEClients, "sse-clients", 1, "open `K` connections to each endpoint: sse, ws and socketio alike (fan-out load; a browser allows at most 6, a poll path is one)")
	fs.DurationVar(&o.MaxP50, "max-p50", 0, "fail when a path's median latency"+over+" is above `D` (e.g. 50ms)")
	fs.DurationVar(&o.MaxP99, "max-p99", 0, "fail when a path's p99 latency"+over+" is above `D`")
	fs.Float64Var(&o.MinDelivery, "min-delivery", 1.0, "fraction `F` of probes"+over+" each path must deliver (0..1)")
	fs.Int64Var(&o.MinSubscribers, "min-subscribers", 0, "fail when PUBSUB NUMSUB of the probe channel is below `N` (fanscope's own subscription counts)")
}

func (o *probeFlags) budgets() probes.Budgets {
	return probes.Budgets{MaxP50: o.MaxP50, MaxP99: o.MaxP99, MinDelivery: o.MinDelivery, MinSubscribers: o.MinSubscribers}
}

// validate checks the shared flags; the errors are usage errors.
func (o *probeFlags) validate() error {
	switch {
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

// probeConnectWait is how long the SSE connections may go without another
// one connecting before the run gives up with exit 3 (--timeout when
// longer): 10,000 connections may take longer than this to open, one
// stuck connection may not. A variable so that a test can shorten it.
var probeConnectWait = 10 * time.Second

// maxSSEClients caps --sse-clients (connections per endpoint).
const maxSSEClients = 100000

func (o *probeOptions) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	o.probeFlags.register(fs, "")
	fs.IntVarP(&o.Count, "count", "n", 10, "probes to send")
	fs.DurationVar(&o.Interval, "interval", 200*time.Millisecond, "time between probes")
	fs.BoolVar(&o.JSON, "json", false, "print the report as one JSON object on stdout")
	fs.StringVar(&o.JUnit, "junit", "", "also write a JUnit XML report to `FILE`, one test case per path")
}

func newProbeCmd(e *env) *cobra.Command {
	var src SourceFlags
	var opts probeOptions
	cmd := &cobra.Command{
		Use:   "probe [source flags] [probe flags]",
		Short: "Smoke probe: publish probes and check every path delivers them in budget",
		Long: `probe publishes -n probes to the probe channel and watches them arrive on
fanscope's own Redis subscription (path "redis") and on every endpoint
(path "sse:NAME", and the other doors below). Each probe carries a token fsp-<run id>-<seq>; a delivery
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
subscribed. Every door is a path: ws:NAME, socketio:NAME, poll:NAME (its
latency is bounded by --poll-interval), browser:NAME (a real Chromium) and
page:NAME (--page URL --expect SELECTOR: publish → the element visible).
A connection whose attempts fail for max(--timeout, 10s)
ends the run with 3; one whose first request is still waiting for response
headers then is probed anyway (some servers send the headers with the first
event), and is 3 only if it never connects during the run.`,
		Example: `  fanscope probe -c story:published --sse app-1=http://localhost:8080/api/community/events
  fanscope probe -c story:published --sse http://app-1:8080/api/community/events --sse http://app-2:8080/api/community/events \
      --max-p99 100ms --min-subscribers 3 --junit probe.xml
  fanscope probe -c story:published --sse http://localhost:8080/api/community/events \
      --template '{"storyId":"{{token}}","title":"probe"}' --sse-clients 200 --json
  fanscope probe -c story:published --sse app=http://localhost:8080/api/community/events --ws app=ws://localhost:8080/ws \
      --browser app=http://localhost:8080/api/community/events
  fanscope probe -c story:published --page home=http://localhost:3000/ --expect '[data-testid="new-story-notification"]' --max-p99 2s`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runProbe(cmd.Context(), e, src, opts)
		},
	}
	src.Register(cmd.Flags())
	src.registerChannelCompletion(cmd, e.getenv)
	opts.register(cmd)
	return cmd
}

func (o *probeOptions) validate() error {
	switch {
	case o.Count < 1:
		return usageError(fmt.Errorf("--count %d: send at least one probe", o.Count))
	case o.Interval < 0:
		return usageError(fmt.Errorf("--interval %v is negative", o.Interval))
	}
	return o.probeFlags.validate()
}

// runProbe is `fanscope probe`: open the sources, send the probes, report.
// The report is written whatever happens after the flags were accepted:
// a source that cannot be reached is a report with pass false, error and
// exit 3, so CI's report step still has it.
func runProbe(ctx context.Context, e *env, src SourceFlags, opts probeOptions) error {
	if err := opts.validate(); err != nil {
		return err
	}
	cfg, err := src.sessionConfig(e.getenv, true)
	if err != nil {
		return err
	}
	cfg.ProbeChannel, cfg.ProbeShard = session.ProbeTarget(opts.Channel, cfg.Subscription)
	if cfg.ProbeChannel == "" {
		return usageError(errors.New("probe needs a channel to publish to: give -c CHANNEL, -s SHARD-CHANNEL or --probe-channel NAME"))
	}
	if opts.JUnit != "" {
		// Find a --junit in a missing directory before sending anything.
		if fi, err := os.Stat(filepath.Dir(opts.JUnit)); err != nil || !fi.IsDir() {
			return usageError(fmt.Errorf("--junit %s: its directory does not exist", opts.JUnit))
		}
	}
	cfg.Conns = opts.SSEClients
	cfg.Probe.Template, cfg.Probe.Timeout = opts.Template, opts.Timeout
	cfg.Probe.RunID = probes.NewRunID() // the report names it even when nothing connects

	s, err := session.Open(ctx, cfg)
	if err != nil {
		return failedProbeReport(e, opts, probes.BuildReport(probes.Snapshot{RunID: cfg.Probe.RunID}, probes.ReportInput{Channel: cfg.ProbeChannel}, opts.budgets()), err)
	}
	if err := s.Start(ctx); err != nil {
		s.Close()
		return failedProbeReport(e, opts, s.Engine().Report(time.Now(), probes.ReportInput{Channel: cfg.ProbeChannel}, opts.budgets()), err)
	}
	run := session.ProbeRun{
		Count: opts.Count, Interval: opts.Interval, Timeout: opts.Timeout,
		ConnectWait: max(opts.Timeout, probeConnectWait), Budgets: opts.budgets(),
		OnSilent: func(c session.Source) {
			st := c.Status()
			fmt.Fprintf(e.stderr, "fanscope: %s connection %d sent no response headers within %v; probing anyway (some servers send them with the first event)\n",
				st.Path(), st.Conn, max(opts.Timeout, probeConnectWait))
		},
	}
	progress := !opts.JSON && e.isTerminal(e.stderr)
	run.OnSent = func(i int, n int64, err error) {
		switch {
		case err != nil:
			fmt.Fprintf(e.stderr, "\rfanscope: %v\n", err)
		case progress:
			fmt.Fprintf(e.stderr, "\rfanscope: probe %d/%d sent (%d receivers)", i+1, opts.Count, n)
		}
	}
	rep, err := s.RunProbes(ctx, run)
	s.Close()
	if progress {
		fmt.Fprint(e.stderr, "\r\x1b[K")
	}
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("probe interrupted before its last delivery: %w", err)
		}
		return failedProbeReport(e, opts, rep, err)
	}
	return writeProbeReport(e, &rep, opts)
}

// failedProbeReport writes rep marked with err (pass false, error, exit)
// and returns err, so that the process ends with err's status.
func failedProbeReport(e *env, opts probeOptions, rep probes.Report, err error) error {
	code := exitCode(err)
	if code == exitUsage {
		return err
	}
	if code == exitCheckFailed {
		code = exitUnreachable // a run that could not complete is not a verdict on the pipeline
		err = exitWith(code, err)
	}
	path := ""
	var ce *session.ConnectError
	if errors.As(err, &ce) {
		path = ce.Status.Path()
	}
	rep.Failed(err, code, probes.CheckConnect, path)
	if werr := writeProbeReport(e, &rep, opts); werr != nil && exitCode(werr) != exitCheckFailed {
		return werr
	}
	return err
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
			if rep.Error == "" || f.Message != rep.Error { // the error itself is printed on exit
				fmt.Fprintf(e.stderr, "fanscope: FAIL %s\n", f.Message)
			}
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
