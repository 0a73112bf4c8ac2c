package session

import (
	"fmt"
	"sync"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/probes"
)

// Health windows: a problem is reported while its cause is recent, and
// the header returns to healthy once it is not.
const (
	// lossWindow is how long a lost probe keeps its path unhealthy.
	lossWindow = time.Minute
	// silenceMessages: an endpoint that relayed organic traffic before and
	// has received nothing for silenceAfter while Redis carried at least
	// this many messages is reported as silent.
	silenceMessages = 5
)

// silenceAfter is how long such an endpoint may stay silent; a variable
// so that a test can shorten it.
var silenceAfter = 30 * time.Second

// healthState is what the fan-in learns about each path's health from the
// records themselves (organic silence), plus probe losses by time.
type healthState struct {
	mu         sync.Mutex
	redisMsgs  uint64 // organic Redis messages seen
	paths      map[string]*pathHealth
	lostSeen   map[string]int64 // engine's lost count per path at the last look
	losses     []lossEvent
	resetAfter time.Time // losses before this are forgotten (the user cleared them)
}

type pathHealth struct {
	relays       bool      // delivered a message also seen on Redis (hop matched)
	lastDelivery time.Time // last event of any kind
	redisAt      uint64    // redisMsgs at lastDelivery
}

type lossEvent struct {
	at   time.Time
	path string
	n    int64
}

// observe runs on the fan-in goroutine for every batch.
func (h *healthState) observe(batch []feed.Record) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range batch {
		r := &batch[i]
		switch {
		case r.Source == feed.SourceRedis && r.Kind == feed.KindMessage && r.Probe == "":
			h.redisMsgs++

		case r.Source.Delivers() && r.Kind == feed.KindEvent:
			if h.paths == nil {
				h.paths = map[string]*pathHealth{}
			}
			p := h.paths[r.Path()]
			if p == nil {
				p = &pathHealth{}
				h.paths[r.Path()] = p
			}
			p.relays = p.relays || r.HasHop
			p.lastDelivery, p.redisAt = r.TS, h.redisMsgs
		}
	}
}

// noteProbes turns increases of the engine's lost counters into timed
// loss events, so that a loss is "recent" for lossWindow, then forgotten.
func (h *healthState) noteProbes(now time.Time, snap probes.Snapshot) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lostSeen == nil {
		h.lostSeen = map[string]int64{}
	}
	for _, p := range snap.Paths {
		if d := p.Lost - h.lostSeen[p.Path]; d > 0 {
			h.losses = append(h.losses, lossEvent{at: now, path: p.Path, n: d})
		}
		h.lostSeen[p.Path] = p.Lost
	}
	keep := h.losses[:0]
	for _, l := range h.losses {
		if now.Sub(l.at) < lossWindow && l.at.After(h.resetAfter) {
			keep = append(keep, l)
		}
	}
	h.losses = keep
}

// reset forgets the losses seen so far (the user pressed c).
func (h *healthState) reset(now time.Time) {
	h.mu.Lock()
	h.resetAfter = now
	h.losses = nil
	h.mu.Unlock()
}

// problems names every non-healthy state at now, one phrase each, and
// apart from them the paths that lost probes in the last minute.
func (h *healthState) problems(now time.Time, statuses []feed.Status, probeErr string) (out, losses []string) {
	worst := map[string]bool{} // one line per path: its first unhealthy connection
	for i := range statuses {
		st := &statuses[i]
		path := st.Path()
		if st.Up() || worst[path] {
			continue
		}
		worst[path] = true
		out = append(out, describe(now, st))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	lost := map[string]int64{}
	var order []string
	for _, l := range h.losses {
		if lost[l.path] == 0 {
			order = append(order, l.path)
		}
		lost[l.path] += l.n
	}
	for _, p := range order {
		losses = append(losses, fmt.Sprintf("%s: %d probe%s lost in the last minute", p, lost[p], plural(lost[p])))
	}
	for i := range statuses {
		st := &statuses[i]
		p := h.paths[st.Path()]
		if st.Conn != 0 || !st.Up() || p == nil || !p.relays {
			continue
		}
		if quiet := now.Sub(p.lastDelivery); quiet >= silenceAfter && h.redisMsgs-p.redisAt >= silenceMessages {
			out = append(out, fmt.Sprintf("%s: no events for %s while Redis carried %d messages it relays",
				st.Path(), quiet.Round(time.Second), h.redisMsgs-p.redisAt))
		}
	}
	if probeErr != "" {
		out = append(out, "probe: "+probeErr)
	}
	return out, losses
}

// describe is one unhealthy connection in words: "sse:app-2: stalled 12s
// (nothing received)", "redis: reconnecting: connection refused".
func describe(now time.Time, st *feed.Status) string {
	s := st.Path() + ": " + st.State
	if st.State == feed.StateStalled && !st.LastByte.IsZero() {
		s += fmt.Sprintf(" %s (nothing received, threshold %s)", now.Sub(st.LastByte).Round(time.Second), st.StallAfter)
	}
	if st.Attempt > 1 {
		s += fmt.Sprintf(" (attempt %d)", st.Attempt)
	}
	if st.Error != "" {
		s += ": " + st.Error
	}
	return s
}

func plural(n int64) string {
	if n == 1 {
		return ""
	}
	return "s"
}
