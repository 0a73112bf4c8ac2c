package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/probes"
	"github.com/fanscope/fanscope/redisx"
	"github.com/fanscope/fanscope/ssex"
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
	// every SSE connection is up).
	Probing bool

	programOptions []tea.ProgramOption // tests: a fixed window size
}

// Defaults of the watch flags.
const (
	defaultProbeInterval = time.Second
	introspectEvery      = 2 * time.Second
	commandTimeout       = 5 * time.Second
)

func (o *WatchOptions) register(fs *pflag.FlagSet) {
	fs.IntVar(&o.Buffer, "buffer", tui.DefaultBuffer, "records the live stream keeps (`N`)")
	fs.BoolVar(&o.AllowPublish, "allow-publish", false, "publish (P) to a Redis that is not on loopback without asking first")
	fs.StringVar(&o.ProbeChannel, "probe-channel", "", "where x/X publish probes: channel `NAME` (default: the first -c, else the first -s)")
	fs.DurationVar(&o.ProbeInterval, "probe-interval", defaultProbeInterval, "time between probes while continuous probing (X) is on")
}

func (o *WatchOptions) validate() error {
	switch {
	case o.Buffer < 1:
		return usageError(fmt.Errorf("--buffer %d: keep at least one record", o.Buffer))
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
		Short: "Watch Redis and SSE live in a terminal UI (the default command)",
		Long: `watch shows both ends of the pipeline live: a header with the targets and the
overall health, the sources (each Redis subscription with its subscriber count
and rate, each SSE endpoint with its state, HTTP status, reconnects and time
since the last event and keep-alive), the merged stream of records, probe
latency per path, and a radar of slow Pub/Sub subscribers (output buffer
against the pubsub limit).

Keys: ? help, q quit, tab/shift+tab panes, j k g G move, / filter (esc clears),
space pause, enter details, c clear, w wrap, P publish, x probe, X continuous
probes, y copy payload (OSC 52), ctrl+s save the stream as NDJSON.

Publishing to a Redis that is not on loopback asks for confirmation unless
--allow-publish is given. When stdout is not a terminal, watch prints what
tail would.`,
		Example: `  fanscope -c story:published --sse app-1=http://localhost:8080/api/community/events
  fanscope watch --redis redis://127.0.0.1:6379 -p 'story:*' --buffer 50000`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runWatchCmd(cmd.Context(), e, src, opts)
		},
	}
	src.Register(cmd.Flags())
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
	cfg := watchSessionConfig(src, opts, e.getenv)
	s, err := OpenSession(ctx, cfg)
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

// watchSessionConfig is the session watch needs: a ring for the TUI, and
// the probe channel subscribed when --probe-channel names one that is not
// otherwise watched.
func watchSessionConfig(src SourceFlags, opts WatchOptions, getenv func(string) string) SessionConfig {
	var extra []string
	if ch, shard := watchProbeChannel(src, opts); ch != "" && !shard &&
		!slices.Contains(src.Channels, ch) && !matchedByPattern(src.Patterns, ch) {
		extra = []string{ch}
	}
	return SessionConfig{
		Sources:       src,
		Probe:         probes.Config{MatchKey: src.MatchKey},
		RingSize:      max(opts.Buffer, 1024),
		ExtraChannels: extra,
		Getenv:        getenv,
	}
}

// watchProbeChannel is where x and X publish ("" when there is nowhere).
func watchProbeChannel(src SourceFlags, opts WatchOptions) (channel string, shard bool) {
	switch {
	case opts.ProbeChannel != "":
		return opts.ProbeChannel, slices.Contains(src.ShardChannels, opts.ProbeChannel)
	case len(src.Channels) > 0:
		return src.Channels[0], false
	case len(src.ShardChannels) > 0:
		return src.ShardChannels[0], true
	}
	return "", false
}

// runWatch runs the TUI on a started session until the user quits or ctx
// ends. The session must have a Ring. It returns a fatal source error
// seen while running (an SSE endpoint answering 401, say), so the exit
// status says what went wrong.
func runWatch(ctx context.Context, s *Session, opts WatchOptions, stdin io.Reader, stdout, stderr io.Writer) error {
	if s.Ring == nil {
		return errors.New("watch: the session keeps no ring of records (RingSize is 0)")
	}
	if opts.Buffer <= 0 {
		opts.Buffer = tui.DefaultBuffer
	}
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = defaultProbeInterval
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b := newWatchBackend(ctx, s, opts)
	defer b.stopContinuous()
	go b.introspectLoop(ctx)
	if opts.Probing {
		go func() {
			// A probe sent before the relay registered a connection would
			// count as lost on that path.
			if waitSSE(ctx, s, 10*time.Second) == nil && sleepCtx(ctx, probeSettle) == nil {
				_ = b.SetContinuous(true)
			}
		}()
	}

	defaultChannel := b.probeChannel
	if defaultChannel == "" {
		defaultChannel = firstOf(s.Subscription().Channels)
	}
	m := tui.New(tui.Options{
		Backend:      b,
		Buffer:       opts.Buffer,
		AllowPublish: opts.AllowPublish,
		Channel:      defaultChannel,
	})
	p := tea.NewProgram(m, append([]tea.ProgramOption{tea.WithContext(ctx), tea.WithInput(stdin), tea.WithOutput(stdout)}, opts.programOptions...)...)

	var fatal error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case err := <-s.Err():
			b.setFatal(err)
			fatal = err
		case <-ctx.Done():
		}
	}()
	_, err := p.Run()
	cancel()
	wg.Wait()
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

// watchBackend does the TUI's I/O: it copies the session's state into
// snapshots, publishes, probes and saves.
type watchBackend struct {
	ctx          context.Context
	s            *Session
	opts         WatchOptions
	probeChannel string
	probeShard   bool
	shards       []string // -s channels: published with SPUBLISH

	mu         sync.Mutex
	redisErr   string // from the latest Redis state record
	intro      redisx.Introspection
	introErr   error
	introDone  bool
	probeErr   string
	fatal      string
	contCancel context.CancelFunc
}

func newWatchBackend(ctx context.Context, s *Session, opts WatchOptions) *watchBackend {
	sub := s.Subscription()
	src := SourceFlags{Channels: sub.Channels, ShardChannels: sub.ShardChannels}
	ch, shard := watchProbeChannel(src, opts)
	return &watchBackend{ctx: ctx, s: s, opts: opts, probeChannel: ch, probeShard: shard, shards: sub.ShardChannels}
}

// introspectLoop asks Redis for subscriber counts and the client list
// every introspectEvery until ctx ends.
func (b *watchBackend) introspectLoop(ctx context.Context) {
	if b.s.Redis == nil {
		return
	}
	t := time.NewTicker(introspectEvery)
	defer t.Stop()
	for {
		ictx, cancel := context.WithTimeout(ctx, commandTimeout)
		in, err := b.s.Redis.Introspect(ictx, b.s.Subscription())
		cancel()
		b.mu.Lock()
		if err == nil {
			b.intro = in
		}
		b.introErr, b.introDone = err, true
		b.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (b *watchBackend) setFatal(err error) {
	b.mu.Lock()
	b.fatal = err.Error()
	b.mu.Unlock()
}

// Snapshot copies everything the TUI shows.
func (b *watchBackend) Snapshot(sinceSeq uint64) tui.Snapshot {
	now := time.Now()
	s := b.s
	snap := tui.Snapshot{
		Now:        now,
		NewRecords: s.Ring.Since(sinceSeq, 0),
		Dropped:    s.Dropped(),
	}
	b.mu.Lock()
	intro, introErr, introDone, probeErr, fatal := b.intro, b.introErr, b.introDone, b.probeErr, b.fatal
	b.mu.Unlock()

	if s.Redis != nil {
		snap.Header.Targets = append(snap.Header.Targets, s.Redis.Target())
		snap.Header.Production = !s.Redis.Loopback()
	}
	if s.Sub != nil {
		snap.Redis = b.redisView(intro, introErr)
		if err := b.noteRedisState(snap.NewRecords); snap.Redis.State != feed.StateSubscribed {
			snap.Redis.Error = err
		}
	}
	for _, c := range s.Endpoints {
		d := c.Diagnostics()
		if d.Conn == 0 {
			snap.Header.Targets = append(snap.Header.Targets, d.Name+"="+d.URL)
		}
		snap.SSE = append(snap.SSE, endpointView(d))
	}
	if fatal != "" && len(snap.SSE) > 0 {
		// A fatal error ends one client's Run; say so on every row that
		// failed, in case its diagnostics do not carry the reason.
		for i := range snap.SSE {
			if snap.SSE[i].State == feed.StateFailed && snap.SSE[i].Error == "" {
				snap.SSE[i].Error = fatal
			}
		}
	}
	snap.Latency = b.latencyView(s.Engine.Snapshot(now), probeErr)
	snap.Radar = radarView(intro, introErr, introDone)
	return snap
}

// noteRedisState remembers the error of the latest Redis state record
// (cleared by "subscribed") and returns it.
func (b *watchBackend) noteRedisState(recs []feed.Record) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range recs {
		if r := &recs[i]; r.Source == feed.SourceRedis && r.Kind == feed.KindState {
			b.redisErr = r.Error
			if r.State == feed.StateSubscribed {
				b.redisErr = ""
			}
		}
	}
	return b.redisErr
}

func (b *watchBackend) redisView(intro redisx.Introspection, introErr error) *tui.Redis {
	st := b.s.Sub.Stats()
	r := &tui.Redis{
		Target:     b.s.Redis.Target(),
		State:      st.State,
		PingRTT:    st.PingRTT,
		Messages:   st.Messages,
		Reconnects: st.Reconnects,
		Gaps:       st.Gaps,
		NumPat:     -1,
	}
	have := intro.NumSub != nil
	if have {
		r.NumPat = intro.NumPat
	}
	if introErr != nil {
		r.IntrospectError = introErr.Error()
	}
	sub := b.s.Subscription()
	count := func(m map[string]int64, name string) int64 {
		if n, ok := m[name]; ok && have {
			return n
		}
		return -1
	}
	for _, ch := range sub.Channels {
		r.Subs = append(r.Subs, tui.Subscription{Kind: tui.SubChannel, Name: ch, Subscribers: count(intro.NumSub, ch),
			ByNode: byNode(intro.ByNode, ch)})
	}
	for _, p := range sub.Patterns {
		r.Subs = append(r.Subs, tui.Subscription{Kind: tui.SubPattern, Name: p, Subscribers: -1})
	}
	for _, ch := range sub.ShardChannels {
		r.Subs = append(r.Subs, tui.Subscription{Kind: tui.SubShard, Name: ch, Subscribers: count(intro.ShardNumSub, ch)})
	}
	return r
}

// byNode is channel's subscriber count on each cluster node, by node name.
func byNode(counts map[string]map[string]int64, channel string) []tui.NodeCount {
	if len(counts) < 2 {
		return nil
	}
	var out []tui.NodeCount
	for node, m := range counts {
		out = append(out, tui.NodeCount{Node: node, Subscribers: m[channel]})
	}
	slices.SortFunc(out, func(a, b tui.NodeCount) int { return strings.Compare(a.Node, b.Node) })
	return out
}

func endpointView(d ssex.Diagnostics) tui.Endpoint {
	e := tui.Endpoint{
		Name:        d.Name,
		URL:         d.URL,
		Conn:        d.Conn,
		State:       d.State,
		Status:      d.Status,
		Reconnects:  d.Reconnects,
		Events:      uint64(max(d.Events, 0)),
		LastEvent:   d.LastEvent,
		LastComment: d.LastComment,
		TTFB:        d.TTFB,
		Warnings:    d.Warnings,
	}
	if d.State != feed.StateConnected {
		e.Error = d.LastError
	}
	return e
}

func (b *watchBackend) latencyView(ps probes.Snapshot, probeErr string) tui.Latency {
	b.mu.Lock()
	continuous := b.contCancel != nil
	b.mu.Unlock()
	l := tui.Latency{
		RunID:      ps.RunID,
		Channel:    b.probeChannel,
		Sent:       uint64(max(ps.Sent, 0)),
		Continuous: continuous,
		Interval:   b.opts.ProbeInterval,
		Error:      probeErr,
	}
	for _, p := range ps.Paths {
		path := tui.Path{
			Name:       p.Path,
			Delivered:  uint64(max(p.Delivered, 0)),
			Lost:       uint64(max(p.Lost, 0)),
			Duplicates: uint64(max(p.Duplicates, 0)),
			Reorder:    uint64(max(p.Reordered, 0)),
			P50:        p.Latency.P50,
			P95:        p.Latency.P95,
			P99:        p.Latency.P99,
			Max:        p.Latency.Max,
		}
		for _, w := range p.LatencyWindow {
			v := time.Duration(0)
			if w.Count > 0 {
				v = max(w.P50, time.Microsecond)
			}
			path.Spark = append(path.Spark, v)
		}
		if p.Hop.Count > 0 {
			path.Hop = &tui.Hop{Count: uint64(p.Hop.Count), P50: p.Hop.P50, P95: p.Hop.P95, P99: p.Hop.P99}
		}
		l.Paths = append(l.Paths, path)
	}
	return l
}

func radarView(in redisx.Introspection, introErr error, done bool) tui.Radar {
	r := tui.Radar{
		Available:   done && introErr == nil,
		Soft:        in.Limit.Soft,
		Hard:        in.Limit.Hard,
		SoftSeconds: in.Limit.SoftSeconds,
	}
	switch {
	case !done:
	case introErr != nil:
		r.Reason = introErr.Error()
	case !in.Limit.Available && len(in.Clients) == 0:
		r.Available = false
		r.Reason = radarReason(in.Unavailable)
	}
	for _, c := range in.Clients {
		name := c.Name
		if c.Node != "" {
			name = c.Node + " " + name
		}
		r.Clients = append(r.Clients, tui.Client{Addr: c.Addr, Name: name, Subs: c.Sub + c.PSub + c.SSub, OMem: c.OMem, Age: c.Age, Idle: c.Idle})
	}
	return r
}

// radarReason says why the radar is empty, naming only what the radar
// needs (CLIENT LIST, CONFIG GET) when those are among the failures.
func radarReason(unavailable []string) string {
	var needed []string
	for _, u := range unavailable {
		if strings.Contains(u, "CLIENT LIST") || strings.Contains(u, "CONFIG") {
			needed = append(needed, u)
		}
	}
	if len(needed) == 0 {
		needed = unavailable
	}
	return "this server did not answer: " + strings.Join(needed, "; ")
}

// Publish publishes payload to channel (SPUBLISH for a -s channel).
func (b *watchBackend) Publish(channel, payload string) (int64, error) {
	if b.s.Redis == nil {
		return 0, errors.New("no Redis connection: start fanscope with --redis or -c")
	}
	ctx, cancel := context.WithTimeout(b.ctx, commandTimeout)
	defer cancel()
	if slices.Contains(b.shards, channel) {
		return b.s.Redis.SPublish(ctx, channel, payload)
	}
	return b.s.Redis.Publish(ctx, channel, payload)
}

// ProbeNow publishes one probe to the probe channel.
func (b *watchBackend) ProbeNow() error {
	err := b.probe()
	b.mu.Lock()
	b.probeErr = ""
	if err != nil {
		b.probeErr = err.Error()
	}
	b.mu.Unlock()
	return err
}

func (b *watchBackend) probe() error {
	if b.s.Redis == nil {
		return errors.New("no Redis connection to probe through")
	}
	if b.probeChannel == "" {
		return errors.New("no probe channel: give -c CHANNEL, -s SHARD-CHANNEL or --probe-channel NAME")
	}
	ctx, cancel := context.WithTimeout(b.ctx, commandTimeout)
	defer cancel()
	eng := b.s.Engine
	p := eng.Next(time.Now())
	eng.MarkSent(p.Seq, time.Now()) // after rendering, just before PUBLISH
	var err error
	if b.probeShard {
		_, err = b.s.Redis.SPublish(ctx, b.probeChannel, p.Payload)
	} else {
		_, err = b.s.Redis.Publish(ctx, b.probeChannel, p.Payload)
	}
	if err != nil {
		return fmt.Errorf("publish probe %d: %w", p.Seq, err)
	}
	return nil
}

// SetContinuous starts or stops probing every ProbeInterval.
func (b *watchBackend) SetContinuous(on bool) error {
	if on {
		if b.s.Redis == nil || b.probeChannel == "" {
			return b.probe() // says why probing cannot work
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.contCancel != nil {
			return nil
		}
		ctx, cancel := context.WithCancel(b.ctx)
		b.contCancel = cancel
		go b.probeLoop(ctx)
		return nil
	}
	b.stopContinuous()
	return nil
}

func (b *watchBackend) stopContinuous() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.contCancel != nil {
		b.contCancel()
		b.contCancel = nil
	}
}

func (b *watchBackend) probeLoop(ctx context.Context) {
	t := time.NewTicker(b.opts.ProbeInterval)
	defer t.Stop()
	for {
		_ = b.ProbeNow() // the error shows in the latency pane
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// SaveNDJSON writes records to fanscope-<time>.ndjson in the working
// directory (the temporary directory when that is not writable).
func (b *watchBackend) SaveNDJSON(records []feed.Record) (string, error) {
	name := "fanscope-" + time.Now().Format("20060102-150405.000") + ".ndjson"
	path, err := writeNDJSON(name, records)
	if err != nil {
		var err2 error
		if path, err2 = writeNDJSON(filepath.Join(os.TempDir(), name), records); err2 != nil {
			return "", err
		}
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return path, nil
}

func writeNDJSON(path string, records []feed.Record) (string, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("save records: %w", err)
	}
	w := bufio.NewWriterSize(f, 256<<10)
	var buf []byte
	for i := range records {
		buf = feed.AppendJSON(buf[:0], &records[i])
		if _, err := w.Write(buf); err != nil {
			f.Close()
			return "", fmt.Errorf("save records to %s: %w", path, err)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return "", fmt.Errorf("save records to %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("save records to %s: %w", path, err)
	}
	return path, nil
}
