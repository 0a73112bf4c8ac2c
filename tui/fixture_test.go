package tui

import (
	"fmt"
	"sync"
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/probes"
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
	win := func(vals []time.Duration) []probes.WindowPoint {
		out := make([]probes.WindowPoint, len(vals))
		for i, v := range vals {
			out[i] = probes.WindowPoint{At: now.Add(time.Duration(i-len(vals)) * time.Second), P50: v, Max: v}
			if v > 0 {
				out[i].Count = 1
			}
		}
		return out
	}
	dist := func(n int64, p50, p95, p99 time.Duration) probes.Dist {
		return probes.Dist{Count: n, P50: p50, P90: p95, P95: p95, P99: p99, Max: p99}
	}
	return Snapshot{
		Now: now,
		Header: Header{Targets: []string{"redis://app:***@127.0.0.1:6379/0", "app-1=http://127.0.0.1:8080/api/community/events",
			"app-2=http://127.0.0.1:8081/api/community/events"},
			Problems: []string{"sse:app-2: reconnecting: unexpected EOF"}},
		Redis: &Redis{
			Target: "redis://app:***@127.0.0.1:6379/0", State: feed.StateSubscribed, PingRTT: 210 * time.Microsecond,
			Messages: 1234, Reconnects: 1, Gaps: 1, NumPat: 1,
			Subs: []Subscription{{Kind: SubChannel, Name: "story:published", Subscribers: 3}, {Kind: SubPattern, Name: "story:*", Subscribers: -1}},
		},
		Sources: []feed.Status{
			{Source: feed.SourceSSE, Name: "app-1", URL: "http://127.0.0.1:8080/api/community/events", State: feed.StateConnected, HTTPStatus: 200,
				Events: 100, LastEvent: now.Add(-1200 * time.Millisecond), LastKeepAlive: now.Add(-3 * time.Second), LastByte: now.Add(-1200 * time.Millisecond), TTFB: 2100 * time.Microsecond},
			{Source: feed.SourceSSE, Name: "app-2", URL: "http://127.0.0.1:8081/api/community/events", State: feed.StateReconnecting, HTTPStatus: 502,
				Reconnects: 3, Error: "unexpected EOF", Warnings: []string{"no keep-alive for 45s"}},
			{Source: feed.SourceWS, Name: "app-1", URL: "ws://127.0.0.1:8080/ws", State: feed.StateConnected, HTTPStatus: 101,
				Events: 100, LastEvent: now.Add(-1100 * time.Millisecond), LastKeepAlive: now.Add(-2 * time.Second), Details: []string{"last close 1001 going away"}, Reconnects: 1},
			{Source: feed.SourcePoll, Name: "app-1", URL: "http://127.0.0.1:8080/api/community/recent", State: feed.StateConnected, HTTPStatus: 304,
				Events: 4, LastEvent: now.Add(-4 * time.Second), Details: []string{"304 on 9 of 12 polls", "interval 5s"}},
		},
		Latency: Latency{Channel: "story:published", Probes: probes.Snapshot{At: now, RunID: "a1b2c3d4", Sent: 10, Paths: []probes.PathStats{
			{Path: "redis", Conns: 1, Sent: 10, Delivered: 10, Latency: dist(10, 90*time.Microsecond, 120*time.Microsecond, 200*time.Microsecond), LatencyWindow: win(spark)},
			{Path: "sse:app-1", Endpoint: "app-1", Conns: 1, Sent: 10, Delivered: 9, Lost: 1, Latency: dist(9, 1400*time.Microsecond, 2*time.Millisecond, 3100*time.Microsecond),
				LatencyWindow: win(sseSpark), Hop: dist(20, 1100*time.Microsecond, 2*time.Millisecond, 3*time.Millisecond)},
			{Path: "sse:app-2", Endpoint: "app-2", Conns: 1, Sent: 10, Lost: 10},
			{Path: "ws:app-1", Endpoint: "app-1", Conns: 1, Sent: 10, Delivered: 10, Latency: dist(10, 900*time.Microsecond, 1500*time.Microsecond, 2*time.Millisecond), LatencyWindow: win(sseSpark)},
			{Path: "poll:app-1", Endpoint: "app-1", Conns: 1, Sent: 10, Delivered: 10, Latency: dist(10, 2600*time.Millisecond, 4800*time.Millisecond, 4900*time.Millisecond)},
		}}, PollIntervals: map[string]time.Duration{"poll:app-1": 5 * time.Second}},
		Radar: Radar{Available: true, Soft: 8 << 20, Hard: 32 << 20, SoftSeconds: 60, OutputBufferDisconnections: -1, Clients: []Client{
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
func newFixtureModel(w, h int, b Backend) *Model { return newModelOf(fixtureSnapshot, w, h, b) }

// newModelOf is a model sized w×h that has taken two snapshots made by
// snap, one second apart.
func newModelOf(snap func(time.Time, uint64, int) Snapshot, w, h int, b Backend) *Model {
	m := New(Options{Backend: b, Location: time.UTC, Channel: "story:published"})
	m.Update(tea.WindowSizeMsg{Width: w, Height: h})
	m.Update(SnapshotMsg{snap(t0.Add(-time.Second), 1, 40)})
	m.Update(SnapshotMsg{snap(t0, 41, 40)})
	return m
}

// doorsSnapshot is fixtureSnapshot with every other kind of door: a
// stalled WebSocket, Socket.IO, a browser, MONITOR with its publishers,
// publish→path figures, and a radar that saw Redis drop a client.
func doorsSnapshot(now time.Time, first uint64, n int) Snapshot {
	s := fixtureSnapshot(now, first, n)
	s.Header.Problems = []string{"ws:app-1: stalled 12s", "sse:app-2: reconnecting: unexpected EOF"}
	s.Sources[2].State = feed.StateStalled
	s.Sources[2].LastByte = now.Add(-12 * time.Second)
	s.Sources[2].LastEvent = now.Add(-12 * time.Second)
	s.Sources[2].LastKeepAlive = now.Add(-14 * time.Second)
	s.Sources = append(s.Sources,
		feed.Status{Source: feed.SourceSocketIO, Name: "app-1", State: feed.StateConnected, HTTPStatus: 101, Events: 50,
			LastEvent: now.Add(-900 * time.Millisecond), LastKeepAlive: now.Add(-5 * time.Second), Details: []string{"ping 25s, timeout 20s", "namespace /"}},
		feed.Status{Source: feed.SourceBrowser, Name: "app-1", State: feed.StateConnected, HTTPStatus: 200, Events: 50,
			LastEvent: now.Add(-800 * time.Millisecond), LastKeepAlive: now.Add(-3 * time.Second), RSS: 180 << 20},
		feed.Status{Source: feed.SourceMonitor, State: feed.StateConnected, Events: 12, LastEvent: now.Add(-300 * time.Millisecond)},
	)
	s.Latency.Probes.Paths = append(s.Latency.Probes.Paths,
		probes.PathStats{Path: "socketio:app-1", Endpoint: "app-1", Conns: 1, Sent: 10, Delivered: 10,
			Latency: probes.Dist{Count: 10, P50: 1100 * time.Microsecond, P95: 1600 * time.Microsecond, P99: 2200 * time.Microsecond}, Duplicates: 2})
	s.Latency.Publish = map[string]probes.Dist{
		"redis":     {Count: 40, P50: 80 * time.Microsecond, P99: 300 * time.Microsecond},
		"sse:app-1": {Count: 38, P50: 1300 * time.Microsecond, P99: 3200 * time.Microsecond},
	}
	s.Radar.OutputBufferDisconnections = 2
	s.Radar.Disconnects = []string{
		"client 127.0.0.1:51260 (slow-1) disconnected by Redis (output buffer limit)",
		"client 127.0.0.1:51270 (slow-2) disconnected by Redis (output buffer limit)",
	}
	s.Publishers = []Publisher{
		{Addr: "10.0.0.7:40112", Name: "story-api", Channels: []string{"story:published"}, Count: 120, Rate: 2.5, Last: now.Add(-400 * time.Millisecond)},
		{Addr: "10.0.0.9:51200", Channels: []string{"story:published", "story:updated"}, Count: 3, Rate: 0, Last: now.Add(-42 * time.Second)},
	}
	for i := range s.NewRecords {
		r := &s.NewRecords[i]
		switch r.Seq % 8 {
		case 4: // every other app-1 event arrives over WebSocket instead
			r.Source = feed.SourceWS
		case 5:
			*r = feed.Record{Seq: r.Seq, TS: r.TS, Source: feed.SourceMonitor, Kind: feed.KindPublish, Channel: "story:published",
				Data: `{"storyId":"m` + fmt.Sprint(r.Seq) + `"}`, Client: "10.0.0.7:40112", ClientName: "story-api", ServerTS: r.TS.Add(-time.Millisecond)}
		case 1:
			r.PublishUS, r.HasPublish = 1300, true
		}
	}
	return s
}

// newDoorsModel is newFixtureModel on doorsSnapshot.
func newDoorsModel(w, h int, b Backend) *Model { return newModelOf(doorsSnapshot, w, h, b) }
