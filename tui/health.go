package tui

import (
	"strconv"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/probes"
)

// lossWindow is how long a lost probe keeps the header degraded.
const lossWindow = time.Minute

// lossEvent is a rise of one path's lost count, seen in one snapshot.
type lossEvent struct {
	at   time.Time
	path string
	n    int64
}

// lossWatch turns the probe engine's cumulative lost counts into the
// losses of the last minute, so one lost probe does not keep the header
// degraded for ever; c forgets them at once.
type lossWatch struct {
	seen   map[string]int64 // Lost per path in the latest snapshot
	events []lossEvent      // oldest first
}

func newLossWatch() *lossWatch { return &lossWatch{seen: map[string]int64{}} }

// observe notes the rises since the previous snapshot and forgets losses
// older than the window.
func (l *lossWatch) observe(paths []probes.PathStats, now time.Time) {
	for i := range paths {
		p := &paths[i]
		if d := p.Lost - l.seen[p.Path]; d > 0 {
			l.events = append(l.events, lossEvent{now, p.Path, d})
		}
		l.seen[p.Path] = p.Lost
	}
	k := 0
	for k < len(l.events) && now.Sub(l.events[k].at) >= lossWindow {
		k++
	}
	l.events = l.events[k:]
}

// reset forgets every loss seen so far.
func (l *lossWatch) reset() { l.events = nil }

// problems names each path that lost probes in the window, in path order.
func (l *lossWatch) problems(paths []probes.PathStats) []string {
	if len(l.events) == 0 {
		return nil
	}
	sum := map[string]int64{}
	for _, e := range l.events {
		sum[e.path] += e.n
	}
	var out []string
	for i := range paths {
		if n := sum[paths[i].Path]; n > 0 {
			out = append(out, paths[i].Path+": "+strconv.FormatInt(n, 10)+" probe"+plural(int(n))+" lost in the last minute")
		}
	}
	return out
}

// problems is every reason the pipeline is not healthy: the Backend's,
// then recent probe losses and radar clients near their limit.
func (m *Model) problems() []string {
	out := append([]string(nil), m.snap.Header.Problems...)
	out = append(out, m.losses.problems(m.snap.Latency.Probes.Paths)...)
	r := &m.snap.Radar
	for _, c := range r.Clients {
		if r.hot(c) {
			who := c.Addr
			if c.Name != "" {
				who += " (" + c.Name + ")"
			}
			out = append(out, "radar: "+who+" at "+strconv.FormatInt(c.OMem*100/r.limit(), 10)+"% of the pubsub buffer limit")
		}
	}
	return out
}

// health sums the problems up: healthy, degraded, or down when no source
// is up at all.
func (m *Model) health(problems []string) (label string, level int) {
	up, total := 0, 0
	if r := m.snap.Redis; r != nil {
		total++
		if r.State == feed.StateSubscribed {
			up++
		}
	}
	for i := range m.snap.Sources {
		total++
		if m.snap.Sources[i].Up() {
			up++
		}
	}
	switch {
	case total == 0:
		return "no sources", 1
	case up == 0:
		return "down", 2
	case len(problems) > 0:
		return "degraded", 1
	}
	return "healthy", 0
}
