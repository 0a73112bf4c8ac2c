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
	// early holds organic deliveries that arrived before their PUBLISH's
	// MONITOR line did (fanscope's own subscription often wins that
	// race), so that the publish can still time them when it arrives.
	early []earlyDelivery
}

type earlyDelivery struct {
	key  uint64
	path string
	at   time.Time
}

// Bounds of the deliveries kept for a PUBLISH whose MONITOR line comes
// after them.
const (
	earlyMax = 4096
	earlyAge = 2 * time.Second
)

// Late is a delivery timed by a PUBLISH seen after it arrived.
type Late struct {
	Path string
	US   int64
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
// It returns the deliveries of this publish that arrived before its
// MONITOR line, timed from at.
func (p *Publishes) Add(r *feed.Record, at time.Time) []Late {
	if r.Source != feed.SourceMonitor || r.Kind != feed.KindPublish {
		return nil
	}
	key, ok := matchKey(p.seed, r.Data, p.matchKey)
	if !ok {
		return nil
	}
	p.m.add(key, at)
	var late []Late
	keep := p.early[:0]
	for _, d := range p.early {
		switch {
		case r.TS.Sub(d.at) > earlyAge:
		case d.key == key:
			late = append(late, Late{Path: d.path, US: d.at.Sub(at).Microseconds()})
		default:
			keep = append(keep, d)
		}
	}
	clear(p.early[len(keep):])
	p.early = keep
	return late
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
		if len(p.early) >= earlyMax {
			p.early = append(p.early[:0], p.early[earlyMax/2:]...)
		}
		p.early = append(p.early, earlyDelivery{key: key, path: r.Path(), at: r.TS})
		return false
	}
	r.PublishUS, r.HasPublish = r.TS.Sub(at).Microseconds(), true
	return true
}

// Len is how many publishes are remembered.
func (p *Publishes) Len() int { return p.m.len() }
