package session

import (
	"context"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/probes"
	"github.com/fanscope/fanscope/redisx"
)

// monitorSource runs MONITOR (filtered to PUBLISH/SPUBLISH) once the
// session's Redis client is open: with a Redis that is down at start, it
// waits for it like the subscription does. It is not a delivery path: its
// publish records tell who published, and when.
type monitorSource struct {
	s      *Session
	filter redisx.MonitorFilter

	mon       atomic.Pointer[redisx.Monitor]
	connected chan struct{}
}

func (m *monitorSource) Path() string               { return feed.PathName(feed.SourceMonitor, "") }
func (m *monitorSource) Connected() <-chan struct{} { return m.connected }

func (m *monitorSource) Status() feed.Status {
	if mon := m.mon.Load(); mon != nil {
		return mon.Status()
	}
	st := feed.Status{Source: feed.SourceMonitor, State: feed.StateConnecting}
	if m.s.redis != nil {
		st.URL = m.s.redis.target()
	}
	return st
}

func (m *monitorSource) Run(ctx context.Context, sink feed.Sink) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for m.s.Redis() == nil {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
	mon := m.s.Redis().NewMonitor(m.filter)
	m.mon.Store(mon)
	go func() {
		select {
		case <-mon.Connected():
			close(m.connected)
		case <-ctx.Done():
		}
	}()
	return mon.Run(ctx, sink)
}

// Publishers kept at most, and how far back a publisher's rate looks.
const (
	maxPublishers  = 256
	maxPubChannels = 16
	rateWindow     = 10 * time.Second
)

// Publisher is one client seen publishing through MONITOR.
type Publisher struct {
	Addr, Name string
	Channels   []string // the channels it published to (the first few)
	Count      uint64
	Rate       float64 // publishes per second over the last 10 s
	Last       time.Time
}

// publishTracker is the fan-in's view of MONITOR: who publishes, and the
// publish→delivery time of organic traffic on every path.
type publishTracker struct {
	pubs *probes.Publishes // fan-in only

	mu       sync.Mutex
	byAddr   map[string]*publisherState
	latency  map[string]*probes.Histogram
	monitors *monitorSource
}

type publisherState struct {
	Publisher
	recent []time.Time // publish times within rateWindow, oldest first
}

func newPublishTracker(matchKey string, m *monitorSource) *publishTracker {
	return &publishTracker{pubs: probes.NewPublishes(matchKey, 0, 0), byAddr: map[string]*publisherState{},
		latency: map[string]*probes.Histogram{}, monitors: m}
}

// observe runs on the fan-in for every record, after the probe engine.
func (t *publishTracker) observe(r *feed.Record) {
	if r.Kind == feed.KindPublish {
		if mon := t.monitors.mon.Load(); mon != nil {
			if at, ok := mon.LocalTime(r); ok {
				// Deliveries that beat the MONITOR line are timed now
				// (their records have gone out without publish_us).
				for _, l := range t.pubs.Add(r, at) {
					t.record(l.Path, l.US)
				}
			}
		}
		t.notePublisher(r)
		return
	}
	if t.pubs.Annotate(r) {
		t.record(r.Path(), r.PublishUS)
	}
}

// record adds one publish→delivery time to path's distribution.
func (t *publishTracker) record(path string, us int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.latency[path]
	if h == nil {
		h = &probes.Histogram{}
		t.latency[path] = h
	}
	h.Record(us)
}

func (t *publishTracker) notePublisher(r *feed.Record) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.byAddr[r.Client]
	if p == nil {
		if len(t.byAddr) >= maxPublishers {
			t.evictOldest()
		}
		p = &publisherState{Publisher: Publisher{Addr: r.Client}}
		t.byAddr[r.Client] = p
	}
	if r.ClientName != "" {
		p.Name = r.ClientName
	}
	if !slices.Contains(p.Channels, r.Channel) && len(p.Channels) < maxPubChannels {
		p.Channels = append(p.Channels, r.Channel)
	}
	p.Count++
	p.Last = r.TS
	p.recent = append(p.recent, r.TS)
	if len(p.recent) > 4096 {
		p.recent = p.recent[len(p.recent)-2048:]
	}
}

func (t *publishTracker) evictOldest() {
	var oldest string
	for addr, p := range t.byAddr {
		if oldest == "" || p.Last.Before(t.byAddr[oldest].Last) {
			oldest = addr
		}
	}
	delete(t.byAddr, oldest)
}

// snapshot copies the publishers (most recent first) and the
// publish→delivery distributions per path.
func (t *publishTracker) snapshot(now time.Time) ([]Publisher, map[string]probes.Dist) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pubs := make([]Publisher, 0, len(t.byAddr))
	for _, p := range t.byAddr {
		i := sort.Search(len(p.recent), func(i int) bool { return now.Sub(p.recent[i]) < rateWindow })
		p.recent = p.recent[i:]
		c := p.Publisher
		c.Channels = slices.Clone(p.Channels)
		c.Rate = float64(len(p.recent)) / rateWindow.Seconds()
		pubs = append(pubs, c)
	}
	sort.Slice(pubs, func(i, j int) bool { return pubs[i].Last.After(pubs[j].Last) })
	lat := make(map[string]probes.Dist, len(t.latency))
	for path, h := range t.latency {
		lat[path] = h.Dist()
	}
	return pubs, lat
}
