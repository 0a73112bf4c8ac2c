package serve

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/probes"
	"github.com/fanscope/fanscope/redisx"
	"github.com/fanscope/fanscope/session"
)

var t0 = time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)

func TestLatencyBuckets(t *testing.T) {
	b := LatencyBuckets
	want := []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 30}
	if !slices.Equal(b, want) {
		t.Errorf("got %v, want %v", b, want)
	}
}

type fixture struct {
	reg *prometheus.Registry
	m   *Metrics
	tr  *Tracker
}

func newFixture(t *testing.T, cfg TrackerConfig) *fixture {
	t.Helper()
	reg := prometheus.NewRegistry()
	var names []string
	for k := range cfg.Labels {
		names = append(names, k)
	}
	m, err := NewMetrics(reg, map[string]string{"region": "eu-west-1"}, names)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name == "" {
		cfg.Name = "prod"
	}
	return &fixture{reg: reg, m: m, tr: NewTracker(m, cfg)}
}

// value reads one series; labels beyond target are given as pairs.
func (f *fixture) value(t *testing.T, c prometheus.Collector, lv ...string) float64 {
	t.Helper()
	switch v := c.(type) {
	case *prometheus.CounterVec:
		return testutil.ToFloat64(v.WithLabelValues(append([]string{"prod"}, lv...)...))
	case *prometheus.GaugeVec:
		return testutil.ToFloat64(v.WithLabelValues(append([]string{"prod"}, lv...)...))
	}
	t.Fatalf("cannot read %T", c)
	return 0
}

// histCount is the sample count and sum of one histogram series.
func (f *fixture) hist(t *testing.T, name, path string) (uint64, float64) {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelOf(m, "path") == path {
				return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
			}
		}
	}
	return 0, 0
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func probeRec(src feed.Source, ep string, conn int, token string, at time.Time, latUS int64) feed.Record {
	r := feed.Record{TS: at, Source: src, Endpoint: ep, Conn: conn, Probe: token, LatencyUS: latUS, Data: token}
	r.Kind = feed.KindEvent
	if src == feed.SourceRedis {
		r.Kind = feed.KindMessage
		r.Channel = "story:published"
	}
	return r
}

func TestObserveBatch(t *testing.T) {
	f := newFixture(t, TrackerConfig{Paths: []string{"redis", "sse:app-1"}})
	f.tr.ObserveBatch([]feed.Record{
		probeRec(feed.SourceRedis, "", 0, "fsp-1", t0, 100),
		probeRec(feed.SourceSSE, "app-1", 0, "fsp-1", t0, 150_000),
		probeRec(feed.SourceSSE, "app-1", 1, "fsp-1", t0, 170_000), // second connection
		probeRec(feed.SourceSSE, "app-1", 0, "fsp-1", t0, 180_000), // duplicate on connection 0
		probeRec(feed.SourceSSE, "app-1", 0, "fsp-0", t0, 0),       // late: no latency
		{TS: t0, Source: feed.SourceRedis, Kind: feed.KindMessage, Data: "a"},
		{TS: t0, Source: feed.SourceRedis, Kind: feed.KindMessage, Data: "b"},
		{TS: t0, Source: feed.SourceSSE, Endpoint: "app-1", Kind: feed.KindEvent, Data: "a", HasHop: true, HopUS: 2000},
		{TS: t0, Source: feed.SourceSSE, Endpoint: "app-1", Kind: feed.KindComment},
		{TS: t0, Source: feed.SourceSSE, Endpoint: "app-1", Kind: feed.KindState, State: feed.StateConnected},
		{TS: t0, Source: feed.SourceWS, Endpoint: "ws-1", Kind: feed.KindEvent, Data: "a"},
	})
	if n, sum := f.hist(t, "fanscope_probe_latency_seconds", "sse:app-1"); n != 2 || math.Abs(sum-0.32) > 1e-9 {
		t.Errorf("sse:app-1 probe latency: got %d samples summing %v, want 2 summing 0.32 (one per connection, no duplicate, no late)", n, sum)
	}
	if n, _ := f.hist(t, "fanscope_probe_latency_seconds", "redis"); n != 1 {
		t.Errorf("redis probe latency: got %d samples, want 1", n)
	}
	if n, sum := f.hist(t, "fanscope_hop_latency_seconds", "sse:app-1"); n != 1 || sum != 0.002 {
		t.Errorf("hop latency: got %d summing %v, want 1 summing 0.002", n, sum)
	}
	for _, c := range []struct {
		path string
		want float64
	}{{"redis", 2}, {"sse:app-1", 1}, {"ws:ws-1", 1}} {
		if got := f.value(t, f.m.messages, c.path); got != c.want {
			t.Errorf("messages{path=%s}: got %v, want %v", c.path, got, c.want)
		}
	}
	// The window holds one first receipt per probe and path.
	if got := len(f.tr.paths["sse:app-1"].lat); got != 1 {
		t.Errorf("window latencies of sse:app-1: got %d, want 1", got)
	}
}

func snap(sent int, paths ...probes.PathStats) probes.Snapshot {
	return probes.Snapshot{RunID: "0123abcd", Sent: sent, Paths: paths}
}

func TestSyncCountersNeverGoDown(t *testing.T) {
	f := newFixture(t, TrackerConfig{})
	f.tr.SessionOpened()
	f.tr.syncProbes(t0, snap(3, probes.PathStats{Path: "sse:app-1", Delivered: 2, Lost: 1, Duplicates: 1}), nil)
	f.tr.syncProbes(t0.Add(time.Second), snap(5, probes.PathStats{Path: "sse:app-1", Delivered: 3, Lost: 2, Duplicates: 1}), nil)
	check := func(when string, sent, del, lost, dups float64) {
		t.Helper()
		if got := f.value(t, f.m.probesSent); got != sent {
			t.Errorf("%s: sent got %v, want %v", when, got, sent)
		}
		if got := f.value(t, f.m.deliveries, "sse:app-1"); got != del {
			t.Errorf("%s: deliveries got %v, want %v", when, got, del)
		}
		if got := f.value(t, f.m.lost, "sse:app-1"); got != lost {
			t.Errorf("%s: lost got %v, want %v", when, got, lost)
		}
		if got := f.value(t, f.m.duplicates, "sse:app-1"); got != dups {
			t.Errorf("%s: duplicates got %v, want %v", when, got, dups)
		}
	}
	check("first session", 5, 3, 2, 1)
	// A new session's engine counts from zero again.
	f.tr.SessionDown(errors.New("redis: connection refused"))
	f.tr.SessionOpened()
	f.tr.syncProbes(t0.Add(2*time.Second), snap(1, probes.PathStats{Path: "sse:app-1", Delivered: 1}), nil)
	check("second session", 6, 4, 2, 1)
}

func status(src feed.Source, name string, conn int, state string, reconnects int) feed.Status {
	return feed.Status{Source: src, Name: name, Conn: conn, State: state, Reconnects: reconnects}
}

func TestSyncStatuses(t *testing.T) {
	f := newFixture(t, TrackerConfig{Paths: []string{"redis", "sse:app-1", "ws:ws-1"}})
	if got := f.value(t, f.m.pathUp, "ws:ws-1"); got != 0 {
		t.Errorf("an expected path before any status: up %v, want 0", got)
	}
	f.tr.SessionOpened()
	f.tr.syncProbes(t0, snap(0), []feed.Status{
		status(feed.SourceRedis, "", 0, feed.StateSubscribed, 0),
		status(feed.SourceSSE, "app-1", 0, feed.StateConnected, 2),
		status(feed.SourceSSE, "app-1", 1, feed.StateStalled, 1),
	})
	for _, c := range []struct {
		path        string
		up, stalled float64
		reconnects  float64
	}{{"redis", 1, 0, 0}, {"sse:app-1", 0, 1, 3}, {"ws:ws-1", 0, 0, 0}} {
		if got := f.value(t, f.m.pathUp, c.path); got != c.up {
			t.Errorf("path_up{%s}: got %v, want %v", c.path, got, c.up)
		}
		if got := f.value(t, f.m.pathStalled, c.path); got != c.stalled {
			t.Errorf("path_stalled{%s}: got %v, want %v", c.path, got, c.stalled)
		}
		if got := f.value(t, f.m.reconnects, c.path); got != c.reconnects {
			t.Errorf("reconnects{%s}: got %v, want %v", c.path, got, c.reconnects)
		}
	}
	up, why := f.tr.Health()
	if up || !strings.Contains(why, "sse:app-1 #1 stalled") {
		t.Errorf("health: got %v %q, want down naming sse:app-1 #1 stalled", up, why)
	}
	// Connection 1 started over (its count went down): the counter keeps
	// going up by what it counts now.
	f.tr.syncProbes(t0.Add(time.Second), snap(0), []feed.Status{
		status(feed.SourceRedis, "", 0, feed.StateReconnecting, 1),
		status(feed.SourceSSE, "app-1", 0, feed.StateConnected, 4),
		status(feed.SourceSSE, "app-1", 1, feed.StateConnected, 0),
	})
	if got := f.value(t, f.m.reconnects, "sse:app-1"); got != 5 {
		t.Errorf("reconnects{sse:app-1} after a reset: got %v, want 5", got)
	}
	if got := f.value(t, f.m.pathUp, "redis"); got != 0 {
		t.Errorf("path_up{redis} while reconnecting: got %v, want 0", got)
	}
	if got := f.value(t, f.m.pathUp, "sse:app-1"); got != 1 {
		t.Errorf("path_up{sse:app-1} with both connected: got %v, want 1", got)
	}
	f.tr.SessionDown(errors.New("dial tcp: connection refused"))
	if got := f.value(t, f.m.pathUp, "sse:app-1"); got != 0 {
		t.Errorf("path_up after the session went: got %v, want 0", got)
	}
	if up, why := f.tr.Health(); up || why != "dial tcp: connection refused" {
		t.Errorf("health without a session: got %v %q", up, why)
	}
}

func TestLastProbeSuccessWindow(t *testing.T) {
	f := newFixture(t, TrackerConfig{
		Window:  time.Minute,
		Timeout: 5 * time.Second,
		Budgets: probes.Budgets{MinDelivery: 1, MaxP50: 100 * time.Millisecond},
	})
	series := func() []float64 {
		var out []float64
		mfs, _ := f.reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "fanscope_last_probe_success" {
				for _, m := range mf.GetMetric() {
					out = append(out, m.GetGauge().GetValue())
				}
			}
		}
		return out
	}
	f.tr.SessionOpened()
	f.tr.syncProbes(t0, snap(0), nil)
	if got := series(); len(got) != 0 {
		t.Fatalf("before any probe completed: got %v, want no series", got)
	}
	// Two probes delivered fast on both paths.
	at := t0.Add(time.Second)
	f.tr.ObserveBatch([]feed.Record{
		probeRec(feed.SourceRedis, "", 0, "p1", at, 100), probeRec(feed.SourceSSE, "a", 0, "p1", at, 20_000),
		probeRec(feed.SourceRedis, "", 0, "p2", at, 100), probeRec(feed.SourceSSE, "a", 0, "p2", at, 30_000),
	})
	f.tr.syncProbes(at, snap(2, probes.PathStats{Path: "redis", Delivered: 2}, probes.PathStats{Path: "sse:a", Delivered: 2}), nil)
	if got := series(); !slices.Equal(got, []float64{1}) {
		t.Fatalf("two probes within budget: got %v, want [1]", got)
	}
	// A slow one: the window's median (2 of 3 fast) still passes; a
	// second slow one moves the median over 100ms.
	at = t0.Add(10 * time.Second)
	f.tr.ObserveBatch([]feed.Record{probeRec(feed.SourceSSE, "a", 0, "p3", at, 400_000), probeRec(feed.SourceSSE, "a", 0, "p4", at, 400_000), probeRec(feed.SourceSSE, "a", 0, "p5", at, 400_000)})
	f.tr.syncProbes(at, snap(5, probes.PathStats{Path: "redis", Delivered: 5}, probes.PathStats{Path: "sse:a", Delivered: 5}), nil)
	if got := series(); !slices.Equal(got, []float64{0}) {
		t.Errorf("median 400ms over a 100ms budget: got %v, want [0]", got)
	}
	rep, ok := f.tr.Report()
	if !ok || rep.Pass || len(rep.Failures) != 1 || !strings.Contains(rep.Failures[0].Message, "sse:a: p50 400ms above --max-p50 100ms") {
		t.Errorf("report: got ok %v pass %v failures %q", ok, rep.Pass, rep.Failures)
	}
	// Once the slow ones left the window, fast deliveries pass again.
	at = t0.Add(75 * time.Second)
	f.tr.ObserveBatch([]feed.Record{probeRec(feed.SourceSSE, "a", 0, "p6", at, 10_000)})
	f.tr.syncProbes(at, snap(6, probes.PathStats{Path: "redis", Delivered: 6}, probes.PathStats{Path: "sse:a", Delivered: 6}), nil)
	if got := series(); !slices.Equal(got, []float64{1}) {
		t.Errorf("after the slow probes left the window: got %v, want [1]", got)
	}
	// A lost probe fails delivery.
	at = t0.Add(80 * time.Second)
	f.tr.syncProbes(at, snap(7, probes.PathStats{Path: "redis", Delivered: 7}, probes.PathStats{Path: "sse:a", Delivered: 6, Lost: 1}), nil)
	if got := series(); !slices.Equal(got, []float64{0}) {
		t.Errorf("one lost of two in the window: got %v, want [0]", got)
	}
	rep, _ = f.tr.Report()
	if rep.Sent != 2 || len(rep.Paths) != 2 || rep.Paths[1].Lost != 1 || rep.Paths[1].Delivered != 1 {
		t.Errorf("report of the window: got sent %d paths %+v", rep.Sent, rep.Paths)
	}
	// Nothing completes any more: the window empties and success is 0.
	f.tr.syncProbes(t0.Add(3*time.Minute), snap(7, probes.PathStats{Path: "redis", Delivered: 7}, probes.PathStats{Path: "sse:a", Delivered: 6, Lost: 1}), nil)
	if got := series(); !slices.Equal(got, []float64{0}) {
		t.Errorf("with no probe completed in the window: got %v, want [0]", got)
	}
}

func TestObserveIntrospection(t *testing.T) {
	f := newFixture(t, TrackerConfig{ProbeChannel: "story:published"})
	in := redisx.Introspection{
		NumSub:      map[string]int64{"story:published": 3, "other": 1},
		ShardNumSub: map[string]int64{"s:x": 2},
		Clients:     []redisx.PubSubClient{{OMem: 1 << 20}, {OMem: 4 << 20}, {OMem: 0}},
		Limit:       redisx.OutputBufferLimit{Available: true, Hard: 32 << 20, Soft: 8 << 20, SoftSeconds: 60},
	}
	f.tr.Sync(session.Snapshot{Now: t0, Introspection: in, Introspected: true})
	for ch, want := range map[string]float64{"story:published": 3, "other": 1, "s:x": 2} {
		if got := f.value(t, f.m.subscribers, ch); got != want {
			t.Errorf("subscribers{%s}: got %v, want %v", ch, got, want)
		}
	}
	if got := f.value(t, f.m.bufferRatio); got != 0.5 {
		t.Errorf("buffer ratio: got %v, want 0.5 (4 MiB of an 8 MiB soft limit)", got)
	}
	f.tr.Sync(session.Snapshot{Now: t0.Add(time.Second), Introspection: in, IntrospectError: errors.New("connection refused"), Introspected: true})
	if n := testutil.CollectAndCount(f.m.subscribers) + testutil.CollectAndCount(f.m.bufferRatio); n != 0 {
		t.Errorf("after a failed introspection: %d series left, want none (not stale values)", n)
	}
}

func TestLabels(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg, map[string]string{"region": "eu-west-1"}, []string{"team"})
	if err != nil {
		t.Fatal(err)
	}
	a := NewTracker(m, TrackerConfig{Name: "a", Labels: map[string]string{"team": "feeds"}, Paths: []string{"redis"}})
	NewTracker(m, TrackerConfig{Name: "b", Paths: []string{"redis"}})
	a.syncProbes(t0, probes.Snapshot{PublishErrors: 1}, nil)
	want := `
# HELP fanscope_path_up 1 while every connection of the path is connected (Redis: subscribed), 0 otherwise.
# TYPE fanscope_path_up gauge
fanscope_path_up{path="redis",region="eu-west-1",target="a",team="feeds"} 0
fanscope_path_up{path="redis",region="eu-west-1",target="b",team=""} 0
# HELP fanscope_probe_publish_errors_total Probes whose PUBLISH failed; they count here, not as lost on any path.
# TYPE fanscope_probe_publish_errors_total counter
fanscope_probe_publish_errors_total{region="eu-west-1",target="a",team="feeds"} 1
fanscope_probe_publish_errors_total{region="eu-west-1",target="b",team=""} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "fanscope_path_up", "fanscope_probe_publish_errors_total"); err != nil {
		t.Error(err)
	}
	for _, c := range []struct {
		cl     map[string]string
		target []string
		want   string
	}{
		{map[string]string{"path": "x"}, nil, `label name "path" is one fanscope or Prometheus sets itself`},
		{map[string]string{"__x": "x"}, nil, `reserved by Prometheus`},
		{nil, []string{"bad-name"}, `want letters, digits and underscores`},
		{map[string]string{"team": "a"}, []string{"team"}, `set both for the process (--label) and for a target`},
	} {
		_, err := NewMetrics(prometheus.NewRegistry(), c.cl, c.target)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewMetrics(%v, %v): got %v, want %q", c.cl, c.target, err, c.want)
		}
	}
}

// The dedup memory stays bounded however many probes arrive.
func TestSeenBounded(t *testing.T) {
	f := newFixture(t, TrackerConfig{Timeout: time.Hour})
	for i := range seenCap + 10 {
		f.tr.ObserveBatch([]feed.Record{probeRec(feed.SourceSSE, "a", 0, "p"+string(rune('a'+i%26))+strings.Repeat("x", i%7)+string(rune(i)), t0.Add(time.Duration(i)*time.Millisecond), 10)})
	}
	if n := len(f.tr.seen); n > seenCap {
		t.Errorf("seen holds %d entries, over its cap %d", n, seenCap)
	}
	if n := len(f.tr.paths["sse:a"].lat); n > windowCap {
		t.Errorf("window holds %d latencies, over its cap %d", n, windowCap)
	}
}

// TestReportReceivers: /report's receivers are PUBLISH's answers to the
// probes in the window, as probe reports them.
func TestReportReceivers(t *testing.T) {
	f := newFixture(t, TrackerConfig{Paths: []string{"redis"}, Window: time.Minute})
	f.tr.ObserveReceivers(t0.Add(-2*time.Minute), 9) // leaves the window
	f.tr.ObserveReceivers(t0, 3)
	f.tr.ObserveReceivers(t0.Add(time.Second), 2)
	f.tr.mu.Lock()
	f.tr.evaluate(t0.Add(2 * time.Second))
	rep := f.tr.windowReport(t0.Add(2 * time.Second))
	f.tr.mu.Unlock()
	if rep.Receivers != (probes.Receivers{Min: 2, Max: 3}) {
		t.Errorf("receivers: got %+v, want 2..3", rep.Receivers)
	}
}
