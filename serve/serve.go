package serve

import (
	"github.com/fanscope/fanscope/internal/netx"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/session"
)

// Session is what serve uses of one target's open session;
// *session.Session satisfies it. serve reads the same Snapshot as watch's
// panes: there is one accounting, the session's.
type Session interface {
	// Snapshot copies the session's state: statuses, the probe engine's
	// counters, Redis's introspection (session.Config.Introspect sets how
	// often it is fetched).
	Snapshot(now time.Time) session.Snapshot
	// SendProbe publishes one probe; a failed PUBLISH is counted by the
	// engine as a publish error, not as lost.
	SendProbe(ctx context.Context) (receivers int64, err error)
	// Err delivers a source's error that retrying cannot fix (a 401).
	Err() <-chan error
	Close()
}

// Opener opens and starts one target's session, calling onBatch (before
// the session starts) with every batch of records after the probe engine
// annotated them. An error means the target cannot be watched right now;
// serve retries with backoff.
type Opener func(ctx context.Context, onBatch func([]feed.Record)) (Session, error)

// Target is one watched pipeline.
type Target struct {
	Tracker TrackerConfig
	// ProbeEvery is the time between probes (0: passive watching only).
	ProbeEvery time.Duration
	Open       Opener
}

// Options configure a Server.
type Options struct {
	Labels map[string]string // constant labels on every series (--label)
	Logger *slog.Logger      // nil: discard

	// Timing; zero takes the default. Tests shorten them.
	SyncEvery    time.Duration // session snapshot into the metrics; 1s
	RetryMin     time.Duration // first wait before reopening a target; 1s
	RetryMax     time.Duration // longest wait; 30s
	DrainTimeout time.Duration // how long SIGTERM waits for open requests; 5s
}

// MinProbeEvery is the shortest time between two probes of one target:
// probe traffic on a production channel stays small.
const MinProbeEvery = time.Second

// Server runs every target and serves /metrics, /healthz and /report.
type Server struct {
	opts     Options
	log      *slog.Logger
	reg      *prometheus.Registry
	metrics  *Metrics
	targets  []Target
	trackers []*Tracker
	draining atomic.Bool
}

// New checks the targets and creates the metrics for them.
func New(opts Options, targets []Target) (*Server, error) {
	if len(targets) == 0 {
		return nil, errors.New("serve: no target to watch (give source flags or --config)")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.SyncEvery, time.Second)
	def(&opts.RetryMin, time.Second)
	def(&opts.RetryMax, 30*time.Second)
	def(&opts.DrainTimeout, 5*time.Second)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	names := map[string]bool{}
	labelNames := map[string]bool{}
	for _, t := range targets {
		n := t.Tracker.Name
		switch {
		case n == "":
			return nil, errors.New("serve: a target has no name")
		case names[n]:
			return nil, fmt.Errorf("serve: two targets are named %q; names must differ", n)
		case t.Open == nil:
			return nil, fmt.Errorf("serve: target %q has no opener", n)
		case t.ProbeEvery != 0 && t.ProbeEvery < MinProbeEvery:
			return nil, fmt.Errorf("serve: target %q: probe every %v is below the minimum %v", n, t.ProbeEvery, MinProbeEvery)
		}
		names[n] = true
		for k := range t.Tracker.Labels {
			labelNames[k] = true
		}
	}
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg, opts.Labels, slices.Sorted(maps.Keys(labelNames)))
	if err != nil {
		return nil, err
	}
	// The process's own health (RSS, goroutines, GC) shows a leak long
	// before it hurts.
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s := &Server{opts: opts, log: opts.Logger, reg: reg, metrics: m, targets: targets}
	for _, t := range targets {
		s.trackers = append(s.trackers, NewTracker(m, t.Tracker))
	}
	return s, nil
}

// Trackers returns each target's tracker, in the order given to New.
func (s *Server) Trackers() []*Tracker { return s.trackers }

// Registry is the registry /metrics serves.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Handler serves /metrics, /healthz and /report.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelError),
		EnableOpenMetrics: true,
	}))
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /report", s.reportHandler)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<html><body><h1>fanscope serve</h1><p><a href="/metrics">/metrics</a> · <a href="/healthz">/healthz</a> · <a href="/report">/report</a></p></body></html>`)
	})
	return mux
}

// healthz is 200 while serve runs (a target being down is what the
// metrics are for, not a reason to restart serve) and 503 while it drains;
// the body says per target up or down, and why.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	var b strings.Builder
	for _, t := range s.trackers {
		up, why := t.Health()
		if up {
			fmt.Fprintf(&b, "%s up\n", t.Name())
		} else {
			fmt.Fprintf(&b, "%s down: %s\n", t.Name(), why)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.draining.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		b.WriteString("draining\n")
	}
	_, _ = io.WriteString(w, b.String())
}

// reportHandler writes every target's window report as one JSON object
// keyed by target name (?target=NAME: that one alone). A target with no
// completed probe yet is absent.
func (s *Server) reportHandler(w http.ResponseWriter, r *http.Request) {
	want := r.URL.Query().Get("target")
	out := map[string]TargetReport{}
	found := false
	for _, t := range s.trackers {
		if want != "" && t.Name() != want {
			continue
		}
		found = true
		if rep, ok := t.Report(); ok {
			out[t.Name()] = rep
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if want != "" {
		rep, ok := out[want]
		switch {
		case !found:
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": fmt.Sprintf("no target named %q", want)})
		case !ok:
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": fmt.Sprintf("target %q has completed no probe yet", want)})
		default:
			_ = json.NewEncoder(w).Encode(rep)
		}
		return
	}
	_ = json.NewEncoder(w).Encode(out)
}

// Run serves on ln and watches every target until ctx ends (SIGTERM), then
// drains: stops probing, lets open requests finish (DrainTimeout), closes
// the sessions and returns nil. A target that cannot be reached is
// retried; it never ends Run.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	httpErr := make(chan error, 1)
	go func() { httpErr <- srv.Serve(ln) }()
	s.log.Info("serving", "addr", ln.Addr().String(), "targets", len(s.targets))

	tctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range s.targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.runTarget(tctx, s.targets[i], s.trackers[i])
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-httpErr:
		err = fmt.Errorf("serve http on %s: %w", ln.Addr(), err)
	}
	s.draining.Store(true)
	s.log.Info("draining")
	stop()
	sctx, cancel := context.WithTimeout(context.Background(), s.opts.DrainTimeout)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil && err == nil && !errors.Is(serr, context.DeadlineExceeded) {
		err = fmt.Errorf("shut down http: %w", serr)
	}
	wg.Wait()
	s.log.Info("stopped")
	return err
}

// runTarget keeps one target's session open, reopening it with backoff,
// until ctx ends.
func (s *Server) runTarget(ctx context.Context, t Target, tr *Tracker) {
	log := s.log.With("target", t.Tracker.Name)
	wait := s.opts.RetryMin
	for ctx.Err() == nil {
		sess, err := t.Open(ctx, tr.ObserveBatch)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			tr.SessionDown(err)
			log.Warn("target down; retrying", "error", err.Error(), "retry_in", wait.String())
			if !netx.Sleep(ctx, wait) {
				return
			}
			wait = min(wait*2, s.opts.RetryMax)
			continue
		}
		wait = s.opts.RetryMin
		tr.SessionOpened()
		log.Info("target opened")
		s.watch(ctx, t, tr, sess, log)
		sess.Close()
		tr.SessionDown(errors.New("stopped"))
	}
}

// watch feeds one open session into its tracker until ctx ends: its
// snapshot every SyncEvery, and a probe every ProbeEvery on a goroutine
// of its own, so that a slow PUBLISH holds up no scrape.
func (s *Server) watch(ctx context.Context, t Target, tr *Tracker, sess Session, log *slog.Logger) {
	var wg sync.WaitGroup
	if t.ProbeEvery > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.probeLoop(ctx, t.ProbeEvery, sess, tr, log)
		}()
	}
	tick := time.NewTicker(s.opts.SyncEvery)
	defer tick.Stop()
	wasUp := 0 // 0 unknown, 1 up, 2 down
	for {
		tr.Sync(sess.Snapshot(time.Now()))
		up, why := tr.Health()
		state := 2
		if up {
			state = 1
		}
		if state != wasUp {
			if up {
				log.Info("target up")
			} else {
				log.Warn("target not healthy", "why", why)
			}
			wasUp = state
		}
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case err := <-sess.Err():
			// One source gave up for good (a 401): the others go on, and
			// its status says why it is down.
			log.Error("a source stopped for good", "error", err.Error())
		case <-tick.C:
		}
	}
}

// probeLoop sends a probe every every until ctx ends. A ticker never
// bursts: probe traffic stays at one per interval whatever the delays.
func (s *Server) probeLoop(ctx context.Context, every time.Duration, sess Session, tr *Tracker, log *slog.Logger) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	failing := false
	for {
		// The first probe waits one interval too: the sources connect
		// meanwhile, and a restarted serve does not burst.
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n, err := sess.SendProbe(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			tr.ObserveReceivers(time.Now(), n)
		}
		// Log transitions only: a Redis that is down fails every probe.
		if err != nil && !failing {
			log.Warn("probe publish failed", "error", err.Error())
		} else if err == nil && failing {
			log.Info("probe publish works again")
		}
		failing = err != nil
	}
}
