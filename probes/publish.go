package probes

import (
	"hash/maphash"
	"time"

	"github.com/fanscope/fanscope/feed"
)

// Defaults of a Publishes left zero.
const (
	DefaultPublishEntries = 10000
	DefaultPublishMaxAge  = time.Minute
)

// Publishes remembers recent publishes seen by MONITOR, by payload (or by
// the JSON value at the match key, as hop matching does), with the time
// of the PUBLISH on the local clock (the server's timestamp corrected by
// the clock offset). Organic deliveries that carry one of them get
// publish_us: the time from the PUBLISH to their receipt, end to end,
// without probes. It is bounded in entries and age, has no clock of its
// own, and is not safe for concurrent use (the fan-in owns it).
type Publishes struct {
	seed     maphash.Seed
	matchKey string
	m        *hopMatcher
}

// NewPublishes remembers up to entries publishes for up to maxAge (zero:
// the defaults), matched by equal data or, with matchKey, by the value at
// that JSON key.
func NewPublishes(matchKey string, entries int, maxAge time.Duration) *Publishes {
	if entries <= 0 {
		entries = DefaultPublishEntries
	}
	if maxAge <= 0 {
		maxAge = DefaultPublishMaxAge
	}
	return &Publishes{seed: maphash.MakeSeed(), matchKey: matchKey, m: newHopMatcher(entries, maxAge)}
}

// Add remembers the publish record r (source monitor, kind publish),
// published at at on the local clock. Other records are ignored.
func (p *Publishes) Add(r *feed.Record, at time.Time) {
	if r.Source != feed.SourceMonitor || r.Kind != feed.KindPublish {
		return
	}
	key, ok := matchKey(p.seed, r.Data, p.matchKey)
	if !ok {
		return
	}
	p.m.add(key, at)
}

// Annotate sets r.PublishUS and r.HasPublish when r is an organic
// delivery (a Redis message or an endpoint's event, not a probe) of a
// remembered publish, and reports whether it did. The time may be
// slightly negative when the clock offset's error (half a TIME round
// trip) exceeds the true delay; it is not hidden.
func (p *Publishes) Annotate(r *feed.Record) bool {
	if r.Probe != "" || (r.Kind != feed.KindMessage && r.Kind != feed.KindEvent) {
		return false
	}
	if r.Source != feed.SourceRedis && !r.Source.Delivers() {
		return false
	}
	key, ok := matchKey(p.seed, r.Data, p.matchKey)
	if !ok {
		return false
	}
	at, ok := p.m.lookup(key, r.TS)
	if !ok {
		return false
	}
	r.PublishUS, r.HasPublish = r.TS.Sub(at).Microseconds(), true
	return true
}

// Len is how many publishes are remembered.
func (p *Publishes) Len() int { return p.m.len() }
