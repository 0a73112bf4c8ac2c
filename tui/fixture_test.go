package tui

import (
	"fmt"
	"sync"
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/fanscope/fanscope/feed"
)

// t0 is the fixed clock of every view test.
var t0 = time.Date(2026, 11, 27, 15, 4, 5, 0, time.UTC)

// fixtureRecords returns n records of every kind, from seq first on, one
// every 25 ms ending at end.
func fixtureRecords(first uint64, n int, end time.Time) []feed.Record {
	out := make([]feed.Record, 0, n)
	for i := 0; i < n; i++ {
		seq := first + uint64(i)
		ts := end.Add(-time.Duration(n-1-i) * 25 * time.Millisecond)
		var r feed.Record
		switch seq % 8 {
		case 0, 3:
			r = feed.Record{Source: feed.SourceRedis, Kind: feed.KindMessage, Channel: "story:published",
				Data: fmt.Sprintf(`{"storyId":"s%d","title":"A story about fan-out number %d","author":"ana"}`, seq, seq)}
		case 1, 4:
			r = feed.Record{Source: feed.SourceSSE, Kind: feed.KindEvent, Endpoint: "app-1", Type: "story-published",
				ID: fmt.Sprint(seq), Data: fmt.Sprintf(`{"storyId":"s%d"}`, seq), HopUS: 1200, HasHop: true}
		case 2:
			r = feed.Record{Source: feed.SourceSSE, Kind: feed.KindEvent, Endpoint: "app-2", Type: "story-published",
				ID: fmt.Sprint(seq), Data: "evil \x1b[31mred\x1b[0m\x07 and a\nnewline"}
		case 5:
			r = feed.Record{Source: feed.SourceSSE, Kind: feed.KindComment, Endpoint: "app-1", Data: "ping"}
		case 6:
			r = feed.Record{Source: feed.SourceRedis, Kind: feed.KindMessage, Channel: "story:published",
				Data: fmt.Sprintf(`{"fanscope_probe":"fsp-a1b2c3d4-%d","seq":%d}`, seq, seq), Probe: fmt.Sprintf("fsp-a1b2c3d4-%d", seq), LatencyUS: 95}
		case 7:
			r = feed.Record{Source: feed.SourceSSE, Kind: feed.KindState, Endpoint: "app-2", State: feed.StateReconnecting,
				Status: 502, Attempt: 3, Error: "unexpected EOF"}
		}
		r.Seq, r.TS = seq, ts
		out = append(out, r)
	}
	return out
}

// fixtureSnapshot is a busy pipeline at now with records [first, first+n).
func fixtureSnapshot(now time.Time, first uint64, n int) Snapshot {
	spark := make([]time.Duration, 40)
	for i := range spark {
		spark[i] = time.Duration(80+(i*37)%60) * time.Microsecond
	}
	spark[7] = 0
	sseSpark := make([]time.Duration, 40)
	for i := range sseSpark {
		sseSpark[i] = time.Duration(1000+(i*53)%900) * time.Microsecond
	}
	return Snapshot{
		Now: now,
		Header: Header{Targets: []string{"redis://app:***@127.0.0.1:6379/0", "app-1=http://127.0.0.1:8080/api/community/events",
			"app-2=http://127.0.0.1:8081/api/community/events"}},
		Redis: &Redis{
			Target: "redis://app:***@127.0.0.1:6379/0", State: feed.StateSubscribed, PingRTT: 210 * time.Microsecond,
			Messages: 1234, Reconnects: 1, Gaps: 1, NumPat: 1,
			Subs: []Subscription{{Kind: SubChannel, Name: "story:published", Subscribers: 3}, {Kind: SubPattern, Name: "story:*", Subscribers: -1}},
		},
		SSE: []Endpoint{
			{Name: "app-1", URL: "http://127.0.0.1:8080/api/community/events", State: feed.StateConnected, Status: 200,
				Events: 100, LastEvent: now.Add(-1200 * time.Millisecond), LastComment: now.Add(-3 * time.Second), TTFB: 2100 * time.Microsecond},
			{Name: "app-2", URL: "http://127.0.0.1:8081/api/community/events", State: feed.StateReconnecting, Status: 502,
				Reconnects: 3, Error: "unexpected EOF", Warnings: []string{"no keep-alive for 45s"}},
		},
		Latency: Latency{RunID: "a1b2c3d4", Channel: "story:published", Sent: 10, Paths: []Path{
			{Name: "redis", Delivered: 10, P50: 90 * time.Microsecond, P95: 120 * time.Microsecond, P99: 200 * time.Microsecond, Max: 300 * time.Microsecond, Spark: spark},
			{Name: "sse:app-1", Delivered: 9, Lost: 1, P50: 1400 * time.Microsecond, P95: 2 * time.Millisecond, P99: 3100 * time.Microsecond, Max: 3100 * time.Microsecond,
				Spark: sseSpark, Hop: &Hop{Count: 20, P50: 1100 * time.Microsecond, P95: 2 * time.Millisecond, P99: 3 * time.Millisecond}},
			{Name: "sse:app-2", Delivered: 0, Lost: 10},
		}},
		Radar: Radar{Available: true, Soft: 8 << 20, Hard: 32 << 20, SoftSeconds: 60, Clients: []Client{
			{Addr: "127.0.0.1:51234", Name: "app-1", Subs: 1, OMem: 0},
			{Addr: "127.0.0.1:51240", Name: "app-2", Subs: 1, OMem: 5 << 20},
			{Addr: "127.0.0.1:51250", Name: "fanscope", Subs: 2, OMem: 16 << 10},
		}},
		NewRecords: fixtureRecords(first, n, now),
	}
}

// fakeBackend records what the TUI asked for.
type fakeBackend struct {
	mu         sync.Mutex
	snaps      []Snapshot
	published  []submission
	probes     int
	continuous []bool
	saved      [][]feed.Record
	sinceSeqs  []uint64
}

func (b *fakeBackend) Snapshot(since uint64) Snapshot {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sinceSeqs = append(b.sinceSeqs, since)
	if len(b.snaps) == 0 {
		return Snapshot{Now: t0}
	}
	s := b.snaps[0]
	b.snaps = b.snaps[1:]
	return s
}

func (b *fakeBackend) Publish(channel, payload string) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.published = append(b.published, submission{channel, payload})
	return 3, nil
}

func (b *fakeBackend) ProbeNow() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probes++
	return nil
}

func (b *fakeBackend) SetContinuous(on bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.continuous = append(b.continuous, on)
	return nil
}

func (b *fakeBackend) SaveNDJSON(recs []feed.Record) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.saved = append(b.saved, recs)
	return "/tmp/fanscope-test.ndjson", nil
}

// newFixtureModel is a model sized w×h that has taken two snapshots one
// second apart (so rates are known).
func newFixtureModel(w, h int, b Backend) *Model {
	m := New(Options{Backend: b, Location: time.UTC, Channel: "story:published"})
	m.Update(tea.WindowSizeMsg{Width: w, Height: h})
	m.Update(SnapshotMsg{fixtureSnapshot(t0.Add(-time.Second), 1, 40)})
	m.Update(SnapshotMsg{fixtureSnapshot(t0, 41, 40)})
	return m
}
