package serve

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/probes"
	"github.com/fanscope/fanscope/redisx"
	"github.com/fanscope/fanscope/session"
)

// Bounds that keep a tracker's memory flat whatever the traffic.
const (
	// windowCap is how many entries one path's window keeps at most (of
	// latencies, of completion counts); past it the oldest go first.
	windowCap = 10000
	// seenCap bounds the probe deliveries remembered to tell a connection's
	// first receipt of a probe from a duplicate.
	seenCap = 100000
)

// TrackerConfig is what a Tracker needs to know of its target.
type TrackerConfig struct {
	Name    string
	Labels  map[string]string // per-target labels
	Paths   []string          // paths expected to exist ("redis", "sse:app-1"): down until seen up
	Budgets probes.Budgets
	Window  time.Duration // budgets apply to the probes completed within it
	Timeout time.Duration // probe timeout: how long a delivery is remembered for deduplication
	// ProbeChannel is where probes go ("" when the target only watches);
	// its subscriber count is the --min-subscribers check of /report.
	ProbeChannel string
}

// Tracker turns one target's observations into its metric series, its
// window of completed probes and its health. ObserveBatch runs on the
// session's fan-in goroutine; the other methods on serve's own
// goroutines; all are safe to call concurrently.
type Tracker struct {
	m   *Metrics
	cfg TrackerConfig
	lv  []string // target label values

	mu      sync.Mutex
	paths   map[string]*pathState
	byKey   map[pathKey]*pathState // records' (source, endpoint) → path, without building the name
	seen    map[seenKey]time.Time  // (path, probe, conn) first receipts, for deduplication
	sentWin []countAt              // probes sent, for /report's "sent"
	failWin []countAt              // failed publishes, for /report's "publish_errors"
	recvWin []countAt              // PUBLISH's receiver counts, for /report's "receivers"
	prev    engineCounts           // the session's engine counters at the last Sync
	prevRec map[connKey]int        // reconnects per connection at the last Sync
	runID   string

	open     bool   // a session is open
	openErr  string // why not, when not
	statuses []feed.Status
	subs     map[string]int64 // last NumSub/ShardNumSub, for /report
	report   probes.Report
	reportAt time.Time
	hasRep   bool
	dirty    bool // the window changed since the report was built
}

type pathKey struct {
	src feed.Source
	ep  string
}

type seenKey struct {
	path  *pathState
	token string
	conn  int // -1: the path's first receipt
}

type connKey struct {
	path string
	conn int
	nth  int // several statuses with one path and conn (a Cluster's nodes)
}

type engineCounts struct {
	sent, failed int
	paths        map[string]probes.PathStats
}

type countAt struct {
	at time.Time
	n  int64
}

type latAt struct {
	at time.Time
	us int64
}

type doneAt struct {
	at                    time.Time
	delivered, lost, dups int64
}

// pathState is one path's series and window.
type pathState struct {
	name  string
	m     *pathMetrics
	conns int
	lat   []latAt  // first receipt of each probe on the path
	done  []doneAt // completions (delivered or lost) as the engine counted them
}

// NewTracker returns the tracker of one target; m must have been created
// with cfg.Labels' names among its target labels.
func NewTracker(m *Metrics, cfg TrackerConfig) *Tracker {
	if cfg.Window <= 0 {
		cfg.Window = time.Minute
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = probes.DefaultTimeout
	}
	t := &Tracker{
		m:       m,
		cfg:     cfg,
		lv:      m.targetValues(cfg.Name, cfg.Labels),
		paths:   map[string]*pathState{},
		byKey:   map[pathKey]*pathState{},
		seen:    map[seenKey]time.Time{},
		prevRec: map[connKey]int{},
		openErr: "not opened yet",
	}
	// Counters exist from the start at 0, so that rate() and alert rules
	// see them before the first increment.
	t.m.probesSent.WithLabelValues(t.lv...)
	t.m.publishErrors.WithLabelValues(t.lv...)
	for _, p := range cfg.Paths {
		t.path(p).m.up.Set(0)
	}
	return t
}

// Name is the target's name.
func (t *Tracker) Name() string { return t.cfg.Name }

// path returns the named path's state, creating its series. Call with mu.
func (t *Tracker) path(name string) *pathState {
	if p, ok := t.paths[name]; ok {
		return p
	}
	p := &pathState{name: name, m: t.m.forPath(t.lv, name)}
	t.paths[name] = p
	return p
}

func (t *Tracker) pathOf(r *feed.Record) *pathState {
	k := pathKey{r.Source, r.Endpoint}
	if r.Source == feed.SourceRedis {
		k.ep = ""
	}
	if p, ok := t.byKey[k]; ok {
		return p
	}
	p := t.path(r.Path())
	t.byKey[k] = p
	return p
}

// ObserveBatch accounts for records the probe engine has annotated: a
// probe's receipt feeds the latency histogram (once per probe and
// connection) and the window, an organic message or event counts in
// fanscope_messages_total, a hop time feeds the hop histogram.
func (t *Tracker) ObserveBatch(recs []feed.Record) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var last *pathState
	var organic float64
	flush := func() {
		if last != nil && organic > 0 {
			last.m.messages.Add(organic)
		}
		organic = 0
	}
	for i := range recs {
		r := &recs[i]
		switch {
		case r.Source == feed.SourceRedis && r.Kind == feed.KindMessage:
		case r.Source.Delivers() && r.Kind == feed.KindEvent:
		default:
			continue
		}
		p := t.pathOf(r)
		if p != last {
			flush()
			last = p
		}
		if r.Probe == "" {
			organic++
			if r.HasHop {
				p.m.hopLatency.Observe(seconds(r.HopUS))
			}
			continue
		}
		t.observeProbe(p, r)
	}
	flush()
}

// observeProbe records a probe receipt: the engine sets LatencyUS on
// every receipt within the timeout, duplicates included, and leaves it 0
// on late ones and on probes sent before the path existed.
func (t *Tracker) observeProbe(p *pathState, r *feed.Record) {
	if r.LatencyUS <= 0 {
		return
	}
	conn := max(r.Conn, 0)
	if _, dup := t.seen[seenKey{p, r.Probe, conn}]; dup {
		return
	}
	if len(t.seen) >= seenCap {
		t.pruneSeen(r.TS, true)
	}
	t.seen[seenKey{p, r.Probe, conn}] = r.TS
	p.m.probeLatency.Observe(seconds(r.LatencyUS))
	first := seenKey{p, r.Probe, -1}
	if _, ok := t.seen[first]; !ok {
		t.seen[first] = r.TS
		p.lat = appendCapped(p.lat, latAt{r.TS, r.LatencyUS})
		t.dirty = true
	}
}

// pruneSeen forgets receipts older than twice the probe timeout (no
// duplicate of them can still be told from a late delivery), or, when
// hard, the older half of what is kept.
func (t *Tracker) pruneSeen(now time.Time, hard bool) {
	cut := now.Add(-2*t.cfg.Timeout - time.Second)
	if hard {
		ts := make([]time.Time, 0, len(t.seen))
		for _, at := range t.seen {
			ts = append(ts, at)
		}
		slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
		if m := ts[len(ts)/2]; m.After(cut) {
			cut = m
		}
	}
	for k, at := range t.seen {
		if !at.After(cut) {
			delete(t.seen, k)
		}
	}
}

// appendCapped appends v, first dropping the oldest quarter when s is
// full (dropping one at a time would copy the whole window each time).
func appendCapped[T any](s []T, v T) []T {
	if len(s) >= windowCap {
		s = append(s[:0], s[len(s)-windowCap*3/4:]...)
	}
	return append(s, v)
}

func seconds(us int64) float64 { return float64(us) / 1e6 }

// SessionOpened starts accounting for a new session: its engine counts
// from zero, so the differences start again from there.
func (t *Tracker) SessionOpened() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.open, t.openErr = true, ""
	t.prev = engineCounts{}
	t.prevRec = map[connKey]int{}
}

// SessionDown records that the target has no open session (it could not
// be opened, or is being reopened): every path reads as down.
func (t *Tracker) SessionDown(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.open = false
	t.openErr = "no session"
	if err != nil {
		t.openErr = err.Error()
	}
	t.statuses = nil
	for _, p := range t.paths {
		p.m.up.Set(0)
		p.m.stalled.Set(0)
	}
}

// Sync takes the session's snapshot (the one watch's panes read too):
// counters advance by what the probe engine counted since the last Sync
// (never backwards), gauges take the statuses and Redis's introspection,
// the window moves on and the budgets are judged again.
func (t *Tracker) Sync(snap session.Snapshot) {
	t.syncProbes(snap.Now, snap.Probes, snap.Statuses)
	if snap.Introspected {
		t.ObserveIntrospection(snap.Introspection, snap.IntrospectError)
	}
}

func (t *Tracker) syncProbes(now time.Time, snap probes.Snapshot, statuses []feed.Status) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.runID = snap.RunID
	if d := snap.Sent - t.prev.sent; d > 0 {
		t.m.probesSent.WithLabelValues(t.lv...).Add(float64(d))
		t.sentWin = appendCapped(t.sentWin, countAt{now, int64(d)})
	}
	if d := snap.PublishErrors - t.prev.failed; d > 0 {
		t.m.publishErrors.WithLabelValues(t.lv...).Add(float64(d))
		t.failWin = appendCapped(t.failWin, countAt{now, int64(d)})
		t.dirty = true
	}
	cur := engineCounts{sent: snap.Sent, failed: snap.PublishErrors, paths: make(map[string]probes.PathStats, len(snap.Paths))}
	for _, ps := range snap.Paths {
		cur.paths[ps.Path] = ps
		p := t.path(ps.Path)
		p.conns = ps.Conns
		old := t.prev.paths[ps.Path]
		d := doneAt{at: now, delivered: ps.Delivered - old.Delivered, lost: ps.Lost - old.Lost, dups: ps.Duplicates - old.Duplicates}
		if d.delivered > 0 {
			p.m.deliveries.Add(float64(d.delivered))
		}
		if d.lost > 0 {
			p.m.lost.Add(float64(d.lost))
		}
		if d.dups > 0 {
			p.m.duplicates.Add(float64(d.dups))
		}
		if d.delivered > 0 || d.lost > 0 || d.dups > 0 {
			p.done = appendCapped(p.done, d)
			t.dirty = true
		}
	}
	t.prev = cur
	t.syncStatuses(statuses)
	if len(t.seen) > 0 {
		t.pruneSeen(now, false)
	}
	t.evaluate(now)
}

// syncStatuses sets path_up, path_stalled and reconnects from the
// sources' statuses. A path is up while every one of its connections is.
func (t *Tracker) syncStatuses(statuses []feed.Status) {
	t.statuses = slices.Clone(statuses)
	type agg struct{ up, stalled bool }
	byPath := map[string]*agg{}
	nth := map[connKey]int{}
	for i := range statuses {
		st := &statuses[i]
		name := st.Path()
		a := byPath[name]
		if a == nil {
			a = &agg{up: true}
			byPath[name] = a
		}
		a.up = a.up && st.Up()
		a.stalled = a.stalled || st.State == feed.StateStalled
		k := connKey{path: name, conn: st.Conn}
		k.nth = nth[k]
		nth[connKey{path: name, conn: st.Conn}]++
		prev, seen := t.prevRec[k]
		d := st.Reconnects - prev
		if seen && d < 0 {
			d = st.Reconnects // the connection started over
		}
		if d > 0 {
			t.path(name).m.reconnects.Add(float64(d))
		}
		t.prevRec[k] = st.Reconnects
	}
	for name, p := range t.paths {
		a := byPath[name]
		switch {
		case a != nil:
			p.m.up.Set(b2f(a.up))
			p.m.stalled.Set(b2f(a.stalled))
		case slices.Contains(t.cfg.Paths, name):
			p.m.up.Set(0) // expected but no source reports it
		}
	}
	for name, a := range byPath {
		if _, ok := t.paths[name]; !ok {
			p := t.path(name)
			p.m.up.Set(b2f(a.up))
			p.m.stalled.Set(b2f(a.stalled))
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// ObserveIntrospection takes Redis's view of Pub/Sub: subscribers per
// channel, and the fullest subscriber output buffer against the limit.
// On an error both are withdrawn rather than left stale.
func (t *Tracker) ObserveIntrospection(in redisx.Introspection, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	match := t.targetMatch()
	if err != nil {
		t.m.subscribers.DeletePartialMatch(match)
		t.m.bufferRatio.DeletePartialMatch(match)
		t.subs = nil
		return
	}
	subs := map[string]int64{}
	for ch, n := range in.NumSub {
		subs[ch] = n
	}
	for ch, n := range in.ShardNumSub {
		subs[ch] = n
	}
	t.m.subscribers.DeletePartialMatch(match)
	for ch, n := range subs {
		t.m.subscribers.WithLabelValues(append(slices.Clone(t.lv), ch)...).Set(float64(n))
	}
	t.subs = subs
	limit := in.Limit.Soft
	if limit <= 0 {
		limit = in.Limit.Hard
	}
	if !in.Limit.Available || limit <= 0 {
		t.m.bufferRatio.DeletePartialMatch(match)
		return
	}
	var most int64
	for _, c := range in.Clients {
		most = max(most, c.OMem)
	}
	t.m.bufferRatio.WithLabelValues(t.lv...).Set(float64(most) / float64(limit))
}

func (t *Tracker) targetMatch() map[string]string {
	m := map[string]string{"target": t.cfg.Name}
	for i, k := range t.m.targetLabels {
		m[k] = t.lv[1+i]
	}
	return m
}

// ObserveReceivers notes the receiver count PUBLISH answered for a probe.
func (t *Tracker) ObserveReceivers(at time.Time, n int64) {
	t.mu.Lock()
	t.recvWin = appendCapped(t.recvWin, countAt{at, n})
	t.mu.Unlock()
}

// evaluate drops what left the window and, when the window changed,
// judges the budgets on it again. Call with mu.
func (t *Tracker) evaluate(now time.Time) {
	from := now.Add(-t.cfg.Window)
	t.sentWin = dropBefore(t.sentWin, from, func(c countAt) time.Time { return c.at })
	t.recvWin = dropBefore(t.recvWin, from, func(c countAt) time.Time { return c.at })
	if n := len(t.failWin); n > 0 {
		if t.failWin = dropBefore(t.failWin, from, func(c countAt) time.Time { return c.at }); len(t.failWin) != n {
			t.dirty = true
		}
	}
	for _, p := range t.paths {
		n1, n2 := len(p.lat), len(p.done)
		p.lat = dropBefore(p.lat, from, func(l latAt) time.Time { return l.at })
		p.done = dropBefore(p.done, from, func(d doneAt) time.Time { return d.at })
		if len(p.lat) != n1 || len(p.done) != n2 {
			t.dirty = true
		}
	}
	if !t.dirty {
		return
	}
	t.dirty = false
	t.report = t.windowReport(now)
	t.reportAt = now
	completed := false
	pass := true
	for _, pr := range t.report.Paths {
		if pr.Sent > 0 {
			completed = true
			pass = pass && pr.Pass
		}
	}
	if completed {
		t.hasRep = true
		t.m.lastSuccess.WithLabelValues(t.lv...).Set(b2f(pass))
	} else if t.hasRep {
		t.m.lastSuccess.WithLabelValues(t.lv...).Set(0) // probes stopped completing
	}
}

// windowReport builds probe's report from the window: each path's
// completed probes, and its receipts' latencies, judged by the budgets
// exactly as `fanscope probe` judges a run.
func (t *Tracker) windowReport(now time.Time) probes.Report {
	snap := probes.Snapshot{At: now, RunID: t.runID, Timeout: t.cfg.Timeout}
	for _, c := range t.sentWin {
		snap.Sent += int(c.n)
	}
	for _, c := range t.failWin {
		snap.PublishErrors += int(c.n)
	}
	names := make([]string, 0, len(t.paths))
	for name, p := range t.paths {
		if len(p.done) > 0 || len(p.lat) > 0 {
			names = append(names, name)
		}
	}
	sort.Slice(names, func(i, j int) bool {
		// "redis" first, as in probe's report.
		if (names[i] == feed.PathRedis) != (names[j] == feed.PathRedis) {
			return names[i] == feed.PathRedis
		}
		return names[i] < names[j]
	})
	for _, name := range names {
		p := t.paths[name]
		ps := probes.PathStats{Path: name, Conns: max(p.conns, 1)}
		if _, ep, ok := strings.Cut(name, ":"); ok {
			ps.Endpoint = ep
		}
		for _, d := range p.done {
			ps.Delivered += d.delivered
			ps.Lost += d.lost
			ps.Duplicates += d.dups
		}
		ps.Sent = ps.Delivered + ps.Lost
		var h probes.Histogram
		for _, l := range p.lat {
			h.Record(l.us)
		}
		ps.Latency = h.Dist()
		snap.Paths = append(snap.Paths, ps)
	}
	in := probes.ReportInput{Channel: t.cfg.ProbeChannel}
	for i, c := range t.recvWin {
		in.Receivers.Observe(c.n, i == 0)
	}
	if t.subs != nil && t.cfg.ProbeChannel != "" {
		in.Subscribers = map[string]int64{t.cfg.ProbeChannel: t.subs[t.cfg.ProbeChannel]}
	}
	b := t.cfg.Budgets
	if t.subs == nil {
		b.MinSubscribers = 0 // unknown: not a failure of the window
	}
	return probes.BuildReport(snap, in, b)
}

func dropBefore[T any](s []T, from time.Time, at func(T) time.Time) []T {
	i := 0
	for i < len(s) && at(s[i]).Before(from) {
		i++
	}
	if i == 0 {
		return s
	}
	return append(s[:0], s[i:]...)
}

// Health says whether the target is up (a session is open and every
// source is connected or subscribed) and, when not, why, in words.
func (t *Tracker) Health() (up bool, why string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.open {
		return false, t.openErr
	}
	var bad []string
	for i := range t.statuses {
		st := &t.statuses[i]
		if st.Up() {
			continue
		}
		s := st.Path()
		if st.Conn > 0 {
			s += fmt.Sprintf(" #%d", st.Conn)
		}
		s += " " + st.State
		if st.Error != "" {
			s += " (" + st.Error + ")"
		}
		bad = append(bad, s)
	}
	if len(bad) == 0 {
		return true, ""
	}
	if len(bad) > 5 {
		bad = append(bad[:5], fmt.Sprintf("and %d more", len(bad)-5))
	}
	return false, strings.Join(bad, "; ")
}

// TargetReport is one target's entry of /report: probe's report built
// from the probes completed in the window.
type TargetReport struct {
	Target string    `json:"target"`
	At     time.Time `json:"at"`
	Window string    `json:"window"`
	Up     bool      `json:"up"`
	probes.Report
}

// Report returns the last window report, and false before any probe
// completed.
func (t *Tracker) Report() (TargetReport, bool) {
	up, _ := t.Health()
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.hasRep {
		return TargetReport{}, false
	}
	return TargetReport{Target: t.cfg.Name, At: t.reportAt, Window: t.cfg.Window.String(), Up: up, Report: t.report}, true
}
