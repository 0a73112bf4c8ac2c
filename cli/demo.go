package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/spf13/cobra"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/trafficgen"
	"github.com/fanscope/fanscope/probes"
	"github.com/fanscope/fanscope/redisx"
	"github.com/fanscope/fanscope/relay"
	"github.com/fanscope/fanscope/session"
	"github.com/fanscope/fanscope/tui"
)

// demoFlags are the flags of `fanscope demo`.
type demoFlags struct {
	Redis        string
	Headless     bool
	Duration     time.Duration
	Listen       string
	AllowPublish bool
}

// Demo timing: probes every demoProbeInterval, each allowed demoProbeTimeout.
const (
	demoProbeInterval = 2 * time.Second
	demoProbeTimeout  = 5 * time.Second
	demoKeepAlive     = 5 * time.Second
	demoEndpoint      = "demo"
)

func newDemoCmd(e *env) *cobra.Command {
	f := &demoFlags{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Zero-set-up demo: in-process Redis + relay + story traffic, watched live",
		Long: `demo runs the whole pipeline fanscope is made for, in one process:

  traffic generator ──PUBLISH story:published──▶ Redis ──▶ relay ──SSE──▶ fanscope
  (story JSON every 0.5–2 s)                       │    (GET /api/community/events,
                                                   │     event: story-published)
                                                   └──PSUBSCRIBE story:*──▶ fanscope

Redis is an in-process miniredis unless --redis is given. The relay is
fanscope's reference relay (see 'fanscope relay') on a free loopback port.
fanscope watches story:* on Redis and the relay's SSE endpoint, and sends a
probe every 2 s, so latency fills in by itself. The pattern alone is watched:
adding -c story:published as well would deliver each message twice.

--headless (or stdout not a terminal) prints tail text instead of the TUI;
it ends after --duration (or on Ctrl-C) with the probe report. Exit status 1
when a probe was lost.`,
		Example: `  fanscope demo
  fanscope demo --headless --duration 10s
  fanscope demo --redis redis://127.0.0.1:6379`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), e, f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.Redis, "redis", "", "use this Redis `URL` instead of an in-process one (demo traffic is published to story:*)")
	fs.BoolVar(&f.Headless, "headless", false, "print tail text and a probe report instead of the TUI")
	fs.DurationVar(&f.Duration, "duration", 0, "stop after `D` (default: until interrupted)")
	fs.StringVar(&f.Listen, "listen", "127.0.0.1:0", "`ADDR` the relay listens on (port 0: a free one)")
	fs.BoolVar(&f.AllowPublish, "allow-publish", false, "allow publishing demo traffic to a --redis that is not on loopback")
	return cmd
}

func runDemo(ctx context.Context, e *env, f *demoFlags) error {
	if f.Duration < 0 {
		return usageError(fmt.Errorf("--duration %v is negative", f.Duration))
	}
	// The pipeline lives until the report is written, even after Ctrl-C.
	infra, stopInfra := context.WithCancel(context.WithoutCancel(ctx))
	defer stopInfra()

	redisURL, target := f.Redis, ""
	if redisURL == "" {
		mr := miniredis.NewMiniRedis()
		if err := mr.Start(); err != nil {
			return fmt.Errorf("demo: start in-process redis: %w", err)
		}
		defer mr.Close()
		redisURL, target = "redis://"+mr.Addr(), " (in-process miniredis)"
	}

	relayLog := slog.New(slog.DiscardHandler)
	if f.Headless {
		relayLog = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	rr, err := startRelay(infra, relayOptions{
		Redis:  redisx.Options{URLs: []string{redisURL}, ClientName: "fanscope-demo-relay"},
		Sub:    redisx.Subscription{Channels: []string{trafficgen.ChannelPublished}},
		Listen: f.Listen,
		Relay:  relay.Config{KeepAlive: demoKeepAlive, History: 1000},
		Logger: relayLog,
	})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer rr.Stop()
	if !rr.Redis.Loopback() && !f.AllowPublish {
		return usageError(fmt.Errorf("demo: %s is not on loopback and the demo publishes test traffic to story:*; pass --allow-publish to do it anyway", rr.Redis.Target()))
	}

	tuiMode := !f.Headless && e.isTerminal(e.stdout)
	s, err := session.Open(infra, session.Config{
		Redis:         &redisx.Options{URLs: []string{redisURL}},
		Subscription:  redisx.Subscription{Patterns: []string{"story:*"}},
		Endpoints:     []session.Endpoint{{Kind: feed.SourceSSE, Name: demoEndpoint, URL: rr.URL}},
		Probe:         probes.Config{Timeout: demoProbeTimeout},
		ProbeChannel:  trafficgen.ChannelPublished,
		ProbeInterval: demoProbeInterval,
		RingSize:      max(tui.DefaultBuffer, 1024),
		Introspect:    introspectEvery,
	})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	var printer *tailPrinter
	if !tuiMode {
		printer = newTailPrinter(e.stdout, tailOptions{}, func() {})
		s.OnBatch(printer.print)
	}
	if err := s.Start(infra); err != nil {
		s.Close()
		return fmt.Errorf("demo: %w", err)
	}
	closeSession := sync.OnceFunc(s.Close)
	defer closeSession()
	quit := "Ctrl-C"
	if tuiMode {
		quit = "q"
	}
	fmt.Fprintf(e.stderr, "fanscope demo: redis %s%s; relay %s; probes every %v. %s ends it.\n",
		rr.Redis.Target(), target, rr.URL, demoProbeInterval, quit)

	run := ctx
	if f.Duration > 0 {
		var cancel context.CancelFunc
		run, cancel = context.WithTimeout(ctx, f.Duration)
		defer cancel()
	}
	if tuiMode {
		return demoTUI(run, e, s, f)
	}
	started := time.Now()
	in, err := demoTraffic(run, s)
	if err == nil {
		rep, rerr := demoReport(infra, s, in, started)
		closeSession() // the fan-in has printed every record
		if ferr := printer.flush(); ferr != nil {
			return fmt.Errorf("write output: %w", ferr)
		}
		if rerr != nil {
			return fmt.Errorf("demo: %w", rerr)
		}
		fmt.Fprintln(e.stdout)
		if err := rep.WriteText(e.stdout); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
		if !rep.Pass {
			return &quietError{code: exitCheckFailed}
		}
		return nil
	}
	closeSession()
	_ = printer.flush()
	return fmt.Errorf("demo: %w", err)
}

// demoTUI runs the TUI on the demo session while traffic and probes run
// underneath; it ends when the user quits or run ends.
func demoTUI(run context.Context, e *env, s *session.Session, f *demoFlags) error {
	run, cancel := context.WithCancel(run)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- runTraffic(run, s)
	}()
	// The TUI's own continuous probing (X) sends the probes, so the
	// latency pane says so and X turns them off.
	err := runWatch(run, s, WatchOptions{
		Buffer:        tui.DefaultBuffer,
		AllowPublish:  f.AllowPublish,
		ProbeChannel:  trafficgen.ChannelPublished,
		ProbeInterval: demoProbeInterval,
		Probing:       true,
	}, e.stdin, e.stdout, e.stderr)
	cancel()
	if terr := <-done; err == nil && terr != nil && !isCtxEnd(terr) {
		err = fmt.Errorf("demo: %w", terr)
	}
	return err
}

// runTraffic publishes demo story traffic through the session's Redis
// until run ends.
func runTraffic(run context.Context, s *session.Session) error {
	return trafficgen.Run(run, trafficgen.New(trafficgen.Config{}), func(ctx context.Context, ch, p string) error {
		_, err := s.Publish(ctx, ch, p)
		return err
	})
}

// demoTraffic publishes story traffic and sends a probe every
// demoProbeInterval until run ends; it returns what the report needs from
// outside the engine. A context ending is not an error.
func demoTraffic(run context.Context, s *session.Session) (probes.ReportInput, error) {
	trafficDone := make(chan error, 1)
	go func() {
		trafficDone <- runTraffic(run, s)
	}()

	in := probes.ReportInput{Channel: trafficgen.ChannelPublished}
	probeErr := func() error {
		if err := s.WaitConnected(run, 10*time.Second); err != nil {
			return err
		}
		// The SSE response can arrive a moment before the relay registered
		// the connection for fan-out.
		if err := sleepCtx(run, session.ProbeSettle); err != nil {
			return err
		}
		var err error
		if in.Subscribers, _, err = s.ProbeSubscribers(run); err != nil {
			return err
		}
		tick := time.NewTicker(demoProbeInterval)
		defer tick.Stop()
		for first := true; ; first = false {
			n, err := s.SendProbe(run)
			if err != nil {
				return err
			}
			in.Receivers.Observe(n, first)
			select {
			case <-run.Done():
				return run.Err()
			case err := <-s.Err():
				return err
			case <-tick.C:
				s.Engine().Expire(time.Now())
			}
		}
	}()
	terr := <-trafficDone
	if !isCtxEnd(probeErr) {
		return in, probeErr
	}
	return in, terr
}

// demoReport waits (on infra, which outlives the run) for the last probes
// to arrive or time out and builds the report.
func demoReport(infra context.Context, s *session.Session, in probes.ReportInput, started time.Time) (probes.Report, error) {
	deadline := time.Now().Add(demoProbeTimeout + time.Millisecond)
	for time.Now().Before(deadline) && s.Engine().Pending(time.Now()) > 0 {
		if err := sleepCtx(infra, 10*time.Millisecond); err != nil {
			return probes.Report{}, err
		}
	}
	var err error
	if in.SubscribersAfter, _, err = s.ProbeSubscribers(infra); err != nil {
		return probes.Report{}, err
	}
	in.Duration = time.Since(started)
	return s.Engine().Report(time.Now(), in, probes.DefaultBudgets()), nil
}

// isCtxEnd reports whether err is nil or just says a context ended.
func isCtxEnd(err error) bool {
	return err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
