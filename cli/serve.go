package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/probes"
	"github.com/fanscope/fanscope/redisx"
	"github.com/fanscope/fanscope/serve"
	"github.com/fanscope/fanscope/session"
	"github.com/fanscope/fanscope/ssex"
)

// serveOptions are serve's own flags and the probe flags it shares with
// probe (budgets, --timeout, --template, --probe-channel, --sse-clients).
type serveOptions struct {
	Listen     string
	ProbeEvery time.Duration
	Window     time.Duration
	Labels     []string
	Config     string
	LogFormat  string
	Check      bool
	Name       string

	probeFlags
}

// serveIntrospectEvery is how often serve asks Redis for subscriber counts
// and the Pub/Sub client list.
const serveIntrospectEvery = 10 * time.Second

func (o *serveOptions) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&o.Listen, "listen", serve.DefaultListen, "serve /metrics, /healthz and /report on `[HOST]:PORT`")
	fs.DurationVar(&o.ProbeEvery, "probe-every", serve.DefaultProbeEvery, "send a probe every `D` (at least 1s; 0: watch passively)")
	fs.DurationVar(&o.Window, "window", serve.DefaultWindow, "judge the budgets on the probes completed within the last `D`")
	fs.StringArrayVar(&o.Labels, "label", nil, "constant label `k=v` on every series, e.g. region=eu-west-1 (repeatable)")
	fs.StringVar(&o.Config, "config", "", "YAML `FILE` with several targets (each its Redis, channels, endpoints, budgets, labels)")
	fs.StringVar(&o.LogFormat, "log-format", "text", "log format on stderr: text or json")
	fs.BoolVar(&o.Check, "check", false, "check the configuration and exit (0: good, 2: a mistake, named with its line)")
	fs.StringVar(&o.Name, "name", "default", "the target label of the pipeline given by source flags")

	o.probeFlags.register(fs, "in the window")
}

func newServeCmd(e *env) *cobra.Command {
	var src SourceFlags
	var opts serveOptions
	cmd := &cobra.Command{
		Use:   "serve [source flags] [probe flags] | --config FILE",
		Short: "Always on: watch and probe, and export the figures for Prometheus",
		Long: `serve runs without a terminal: it watches every source passively and
publishes a probe every --probe-every, and serves what it measures:

  GET /metrics   Prometheus metrics (fanscope_*; classic and native histograms)
  GET /healthz   200 while serve runs; each target up or down, and why
  GET /report    the probe report of the probes completed in --window, per target

Budgets (--max-p50, --max-p99, --min-delivery) apply to the probes
completed within --window; fanscope_last_probe_success says whether they
were met. --config names a YAML file with several targets; --label k=v adds
constant labels so that one Prometheus can scrape many serve instances.

A target that cannot be reached is retried and reads as down in the
metrics; serve never exits because of one. SIGTERM drains and exits 0. A
configuration mistake is exit 2, naming the file and line.`,
		Example: `  fanscope serve -c story:published --sse app-1=http://localhost:8080/api/community/events --max-p99 250ms
  fanscope serve --config /etc/fanscope/fanscope.yaml --label region=eu-west-1 --log-format json
  fanscope serve --config fanscope.yaml --check`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServe(cmd, e, src, opts)
		},
	}
	src.Register(cmd.Flags())
	src.registerChannelCompletion(cmd, e.getenv)
	opts.register(cmd)
	return cmd
}

// serveFlagsWithConfig are the flags --config replaces: every source
// flag, and the per-target probe flags.
func serveFlagsWithConfig() []string {
	fs := pflag.NewFlagSet("", pflag.ContinueOnError)
	(&SourceFlags{}).Register(fs)
	names := []string{"name", "probe-channel", "probe-every", "timeout", "template", "sse-clients",
		"max-p50", "max-p99", "min-delivery", "min-subscribers"}
	fs.VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
	return names
}

// servePlan is what serve will run, checked.
type servePlan struct {
	listen    string
	window    time.Duration
	logFormat string
	labels    map[string]string
	targets   []serve.Target
}

func runServe(cmd *cobra.Command, e *env, src SourceFlags, opts serveOptions) error {
	plan, err := planServe(cmd, e, src, opts)
	if err != nil {
		return err
	}
	if opts.Check {
		_, err := fmt.Fprintf(e.stdout, "fanscope serve: configuration good: %d target(s), listen %s\n", len(plan.targets), plan.listen)
		return err
	}
	var h slog.Handler = slog.NewTextHandler(e.stderr, nil)
	if plan.logFormat == "json" {
		h = slog.NewJSONHandler(e.stderr, nil)
	}
	log := slog.New(h)
	srv, err := serve.New(serve.Options{Labels: plan.labels, Logger: log}, plan.targets)
	if err != nil {
		return usageError(err)
	}
	ln, err := net.Listen("tcp", plan.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another serve running? pick another --listen)", plan.listen, err)
	}
	return srv.Run(cmd.Context(), ln)
}

// planServe checks every flag and the config file before anything
// connects: a mistake is exit 2.
func planServe(cmd *cobra.Command, e *env, src SourceFlags, opts serveOptions) (*servePlan, error) {
	fs := cmd.Flags()
	plan := &servePlan{listen: opts.Listen, window: opts.Window, logFormat: opts.LogFormat, labels: map[string]string{}}
	type planned struct {
		t   serve.TargetConfig
		cfg session.Config
	}
	var targets []planned
	if opts.Config != "" {
		var given []string
		for _, f := range serveFlagsWithConfig() {
			if fs.Changed(f) {
				given = append(given, "--"+f)
			}
		}
		slices.Sort(given)
		given = slices.Compact(given)
		if len(given) > 0 {
			return nil, usageError(fmt.Errorf("%s: with --config the targets come from the file; move these settings into it", strings.Join(given, ", ")))
		}
		cfg, err := serve.LoadConfig(opts.Config)
		if err != nil {
			return nil, usageError(err)
		}
		if cfg.Listen != "" && !fs.Changed("listen") {
			plan.listen = cfg.Listen
		}
		if cfg.Window > 0 && !fs.Changed("window") {
			plan.window = cfg.Window
		}
		if cfg.LogFormat != "" && !fs.Changed("log-format") {
			plan.logFormat = cfg.LogFormat
		}
		maps.Copy(plan.labels, cfg.Labels)
		for _, t := range cfg.Targets {
			scfg, err := targetSessionConfig(t, e.getenv)
			if err != nil {
				return nil, usageError(fmt.Errorf("target %q: %w", t.Name, err))
			}
			targets = append(targets, planned{t, scfg})
		}
	} else {
		t, scfg, err := flagTarget(src, opts, e.getenv)
		if err != nil {
			return nil, err
		}
		targets = []planned{{t, scfg}}
	}
	switch plan.logFormat {
	case "text", "json":
	default:
		return nil, usageError(fmt.Errorf("--log-format %q: want text or json", plan.logFormat))
	}
	if plan.window < time.Second {
		return nil, usageError(fmt.Errorf("--window %v: want at least 1s", plan.window))
	}
	if _, _, err := net.SplitHostPort(plan.listen); err != nil {
		return nil, usageError(fmt.Errorf("--listen %q: want [HOST]:PORT, e.g. :9464", plan.listen))
	}
	for _, kv := range opts.Labels {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, usageError(fmt.Errorf("--label %q: want k=v", kv))
		}
		if err := serve.ValidateLabelName(k); err != nil {
			return nil, usageError(fmt.Errorf("--label %s: %w", kv, err))
		}
		plan.labels[k] = v // the command line wins over the file
	}
	for _, pt := range targets {
		t, cfg := pt.t, pt.cfg
		// Build the session once without starting it: what it refuses (an
		// endpoint kind not supported, a bad URL) is a mistake to fix, not
		// an outage to retry.
		s, err := session.Open(cmd.Context(), cfg)
		if err != nil {
			return nil, usageError(fmt.Errorf("target %q: %w", t.Name, err))
		}
		s.Close()
		channel, _ := t.ProbeTo()
		plan.targets = append(plan.targets, serve.Target{
			Tracker: serve.TrackerConfig{
				Name: t.Name, Labels: t.Labels, Paths: t.Paths(), Budgets: t.Budgets,
				Window: plan.window, Timeout: t.Timeout, ProbeChannel: channel,
			},
			ProbeEvery: t.ProbeEvery,
			Open:       openServeSession(cfg),
		})
	}
	return plan, nil
}

// flagTarget is the one target the source and probe flags describe, and
// its session: the source flags make it as they make watch's and probe's.
func flagTarget(src SourceFlags, opts serveOptions, getenv func(string) string) (serve.TargetConfig, session.Config, error) {
	t := serve.TargetConfig{
		Name: opts.Name, Cluster: src.Cluster, SentinelMaster: src.SentinelMaster,
		Channels: src.Channels, Patterns: src.Patterns, ShardChannels: src.ShardChannels,
		ProbeChannel: opts.Channel, ProbeEvery: opts.ProbeEvery, Timeout: opts.Timeout, Template: opts.Template,
		SSEClients: opts.SSEClients, Stall: src.Stall,
		Budgets: opts.budgets(),
	}
	fail := func(err error) (serve.TargetConfig, session.Config, error) {
		return serve.TargetConfig{}, session.Config{}, usageError(err)
	}
	switch {
	case t.Name == "":
		return fail(errors.New("--name is empty: it becomes the target label"))
	case opts.ProbeEvery < 0 || (opts.ProbeEvery > 0 && opts.ProbeEvery < serve.MinProbeEvery):
		return fail(fmt.Errorf("--probe-every %v: want 0 (passive) or at least %v, so that probe traffic stays small", opts.ProbeEvery, serve.MinProbeEvery))
	}
	if err := opts.probeFlags.validate(); err != nil {
		return serve.TargetConfig{}, session.Config{}, err
	}
	if len(t.Channels)+len(t.Patterns)+len(t.ShardChannels) == 0 && t.ProbeChannel == "" {
		return fail(errors.New("serve needs something to watch: give -c CHANNEL, -p PATTERN, -s SHARD-CHANNEL or --probe-channel, with any endpoints (--sse), or --config FILE"))
	}
	if ch, _ := t.ProbeTo(); ch == "" && t.ProbeEvery > 0 {
		return fail(errors.New("serve probes every --probe-every but has no channel to publish to: give -c, -s or --probe-channel (or --probe-every 0)"))
	}
	cfg, err := src.sessionConfig(getenv, true)
	if err != nil {
		return serve.TargetConfig{}, session.Config{}, usageError(err)
	}
	for _, ep := range cfg.Endpoints {
		t.Endpoints = append(t.Endpoints, serve.Endpoint{Kind: ep.Kind, Name: ep.Name, URL: ep.URL})
	}
	cfg.Conns = t.SSEClients
	cfg.Probe.Template, cfg.Probe.Timeout = t.Template, t.Timeout
	serveSession(&cfg, t)
	return t, cfg, nil
}

// serveSession sets what every serve session shares: sources that are
// down are retried (serve never gives up on a target), Redis's
// introspection is fetched for the metrics, and probes go to the target's
// probe channel.
func serveSession(cfg *session.Config, t serve.TargetConfig) {
	cfg.Introspect = serveIntrospectEvery
	cfg.KeepRetrying = true
	if t.ProbeEvery > 0 {
		cfg.ProbeChannel, cfg.ProbeShard = t.ProbeTo()
	}
}

// targetSessionConfig is the session a --config target watches.
func targetSessionConfig(t serve.TargetConfig, getenv func(string) string) (session.Config, error) {
	header := http.Header{}
	for _, k := range slices.Sorted(maps.Keys(t.Headers)) {
		header.Set(k, t.Headers[k])
	}
	if t.BearerEnv != "" {
		tok := getenv(t.BearerEnv)
		if tok == "" {
			return session.Config{}, fmt.Errorf("bearer_env %s: that environment variable is empty or unset", t.BearerEnv)
		}
		header.Set("Authorization", "Bearer "+tok)
	}
	if t.TLSCA != "" {
		// A missing CA file is a mistake found before anything connects.
		if _, err := ssex.NewTransport(t.TLSCA, t.TLSInsecure); err != nil {
			return session.Config{}, err
		}
	}
	urls := t.Redis
	if len(urls) == 0 {
		urls = (&SourceFlags{}).redisURLs(getenv)
	}
	cfg := session.Config{
		Redis: &redisx.Options{URLs: urls, Cluster: t.Cluster, SentinelMaster: t.SentinelMaster,
			TLSCA: t.TLSCA, TLSInsecure: t.TLSInsecure},
		Subscription: redisx.Subscription{Channels: t.Channels, Patterns: t.Patterns, ShardChannels: t.ShardChannels},
		Conns:        t.SSEClients,
		Header:       header,
		TLSCA:        t.TLSCA,
		TLSInsecure:  t.TLSInsecure,
		Stall:        t.Stall,
		PollInterval: t.PollInterval,
		SocketIOPath: t.SocketIOPath,
		Probe:        probes.Config{Template: t.Template, Timeout: t.Timeout, MatchKey: t.MatchKey},
	}
	for _, ep := range t.Endpoints {
		cfg.Endpoints = append(cfg.Endpoints, session.Endpoint{Kind: ep.Kind, Name: ep.Name, URL: ep.URL})
	}
	serveSession(&cfg, t)
	return cfg, nil
}

// openServeSession opens and starts a target's session with serve's
// consumer registered before it starts.
func openServeSession(cfg session.Config) serve.Opener {
	return func(ctx context.Context, onBatch func([]feed.Record)) (serve.Session, error) {
		s, err := session.Open(ctx, cfg)
		if err != nil {
			return nil, err
		}
		s.OnBatch(onBatch)
		if err := s.Start(ctx); err != nil {
			s.Close()
			return nil, err
		}
		return s, nil
	}
}
