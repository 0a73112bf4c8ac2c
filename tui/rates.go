package tui

import (
	"time"

	"github.com/fanscope/fanscope/feed"
)

// rateKey names a counted stream by the parts of its path name
// (feed.PathName(src, name)), so counting a record builds no string:
//   - a Redis channel or pattern: {SourceRedis, channel, 0};
//   - one connection of a path: {source, endpoint, conn};
//   - a path's total over its connections: {source, endpoint, allConns};
//   - a source kind's total: {source, "", kindTotal}.
type rateKey struct {
	src  feed.Source
	name string
	conn int
}

// Totals in rateKey.conn.
const (
	allConns  = -1
	kindTotal = -2
)

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

// add counts Redis messages, deliveries (events of every path) and
// publishes seen by MONITOR, and closes the window once a second has
// passed. The first call only starts the clock: its records are a backlog.
func (m *rateMeter) add(recs []feed.Record, now time.Time) {
	if m.since.IsZero() {
		m.since = now
		return
	}
	for i := range recs {
		r := &recs[i]
		switch {
		case r.Kind == feed.KindMessage && r.Source == feed.SourceRedis:
			name := r.Channel
			if r.Pattern != "" {
				name = r.Pattern
			}
			m.counts[rateKey{feed.SourceRedis, name, 0}]++
			m.counts[rateKey{feed.SourceRedis, "", kindTotal}]++
		case r.Kind == feed.KindEvent || r.Kind == feed.KindPublish:
			m.counts[rateKey{r.Source, r.Endpoint, r.Conn}]++
			m.counts[rateKey{r.Source, r.Endpoint, allConns}]++
			m.counts[rateKey{r.Source, "", kindTotal}]++
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

// channel is the last full window's rate of a Redis channel or pattern.
func (m *rateMeter) channel(name string) float64 {
	return m.rates[rateKey{feed.SourceRedis, name, 0}]
}

// conn is the last full window's rate of one connection of a path.
func (m *rateMeter) conn(src feed.Source, endpoint string, conn int) float64 {
	return m.rates[rateKey{src, endpoint, conn}]
}

// kind is the last full window's rate of every path of one source kind
// (SourceRedis: every Redis message).
func (m *rateMeter) kind(src feed.Source) float64 {
	return m.rates[rateKey{src, "", kindTotal}]
}

// total is the rate of Redis messages and deliveries together.
func (m *rateMeter) total() float64 {
	t := 0.0
	for k, r := range m.rates {
		if k.conn == kindTotal && k.src != feed.SourceMonitor {
			t += r
		}
	}
	return t
}
