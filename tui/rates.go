package tui

import (
	"time"

	"github.com/fanscope/fanscope/feed"
)

// rateKey names a counted stream: a Redis channel or pattern, an SSE
// endpoint, or (empty name) the total of one source.
type rateKey struct {
	src  feed.Source
	name string
}

// rateMeter turns the records of each snapshot into per-second rates over
// one-second windows of snapshot time.
type rateMeter struct {
	since  time.Time
	counts map[rateKey]uint64
	rates  map[rateKey]float64
}

func newRateMeter() *rateMeter {
	return &rateMeter{counts: map[rateKey]uint64{}, rates: map[rateKey]float64{}}
}

// add counts messages and events, and closes the window once a second has
// passed. The first call only starts the clock: its records are a backlog.
func (m *rateMeter) add(recs []feed.Record, now time.Time) {
	if m.since.IsZero() {
		m.since = now
		return
	}
	for i := range recs {
		r := &recs[i]
		switch r.Kind {
		case feed.KindMessage:
			name := r.Channel
			if r.Pattern != "" {
				name = r.Pattern
			}
			m.counts[rateKey{feed.SourceRedis, name}]++
			m.counts[rateKey{feed.SourceRedis, ""}]++
		case feed.KindEvent:
			m.counts[rateKey{feed.SourceSSE, r.Endpoint}]++
			m.counts[rateKey{feed.SourceSSE, ""}]++
		}
	}
	if el := now.Sub(m.since); el >= time.Second {
		rates := make(map[rateKey]float64, len(m.counts))
		for k, n := range m.counts {
			rates[k] = float64(n) / el.Seconds()
		}
		m.rates = rates
		clear(m.counts)
		m.since = now
	}
}

// rate is the last full window's rate of k (0 when unknown).
func (m *rateMeter) rate(src feed.Source, name string) float64 {
	return m.rates[rateKey{src, name}]
}
