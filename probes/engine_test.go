package probes

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
)

var t0 = time.Date(2026, 11, 27, 15, 4, 5, 0, time.UTC)

const runID = "a1b2c3d4"

func newTestEngine(t *testing.T, cfg Config) *Engine {
	t.Helper()
	if cfg.RunID == "" {
		cfg.RunID = runID
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return NewEngine(cfg)
}

func redisRec(at time.Time, data string) *feed.Record {
	return &feed.Record{TS: at, Source: feed.SourceRedis, Kind: feed.KindMessage, Channel: "story:published", Data: data}
}

func sseRec(at time.Time, endpoint string, conn int, data string) *feed.Record {
	return &feed.Record{TS: at, Source: feed.SourceSSE, Kind: feed.KindEvent, Endpoint: endpoint, Conn: conn, Type: "story-published", Data: data}
}

func pathOf(t *testing.T, s Snapshot, name string) PathStats {
	t.Helper()
	for _, p := range s.Paths {
		if p.Path == name {
			return p
		}
	}
	t.Fatalf("path %q not in snapshot (%d paths)", name, len(s.Paths))
	return PathStats{}
}

func TestTokenAndRunID(t *testing.T) {
	if got, want := Token("a1b2c3d4", 7), "fsp-a1b2c3d4-7"; got != want {
		t.Errorf("Token: got %q, want %q", got, want)
	}
	for range 20 {
		if id := NewRunID(); !ValidRunID(id) {
			t.Errorf("NewRunID: got %q, want 8 lowercase hex digits", id)
		}
	}
	for _, id := range []string{"", "a1b2c3d", "A1B2C3D4", "a1b2c3d45", "a1b2c3dg"} {
		if ValidRunID(id) {
			t.Errorf("ValidRunID(%q): got true, want false", id)
		}
	}
}

func TestTemplates(t *testing.T) {
	at := time.Date(2026, 11, 27, 16, 4, 5, 123456789, time.FixedZone("CET", 3600))
	tests := []struct {
		name, template, want string
		err                  bool
	}{
		{"default", DefaultTemplate, `{"fanscope_probe":"fsp-a1b2c3d4-3","seq":3,"sent_at":"2026-11-27T15:04:05.123456789Z"}`, false},
		{"app shape", `{"storyId":"{{token}}","title":"probe"}`, `{"storyId":"fsp-a1b2c3d4-3","title":"probe"}`, false},
		{"plain", `{{token}} {{seq}} {{seq}} {{other}}`, `fsp-a1b2c3d4-3 3 3 {{other}}`, false},
		{"no token", `{"seq":{{seq}}}`, "", true},
		{"empty is default", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Config{Template: tc.template}.Validate()
			if tc.err {
				if !errors.Is(err, ErrUsage) {
					t.Fatalf("Validate: got %v, want an ErrUsage error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate: got %v, want nil", err)
			}
			e := NewEngine(Config{RunID: runID, Template: tc.template})
			e.Next(at)
			e.Next(at)
			p := e.Next(at)
			want := tc.want
			if tc.template == "" {
				want = `{"fanscope_probe":"fsp-a1b2c3d4-3","seq":3,"sent_at":"2026-11-27T15:04:05.123456789Z"}`
			}
			if p.Payload != want || p.Seq != 3 || p.Token != "fsp-a1b2c3d4-3" || !p.SentAt.Equal(at) {
				t.Errorf("Next: got %+v, want payload %s seq 3", p, want)
			}
		})
	}
}

func TestFindToken(t *testing.T) {
	prefix := "fsp-a1b2c3d4-"
	tests := []struct {
		name, data string
		seq        int
		ok         bool
	}{
		{"default payload", `{"fanscope_probe":"fsp-a1b2c3d4-12","seq":12}`, 12, true},
		{"escaped rewrap", `{"wrapped":"{\"fanscope_probe\":\"fsp-a1b2c3d4-5\",\"seq\":5}"}`, 5, true},
		{"bare", "fsp-a1b2c3d4-123456", 123456, true},
		{"other run", `{"fanscope_probe":"fsp-deadbeef-3"}`, 0, false},
		{"no digits then real", "fsp-a1b2c3d4-x fsp-a1b2c3d4-9", 9, true},
		{"zero is not a seq", "fsp-a1b2c3d4-0", 0, false},
		{"organic", `{"storyId":"s1"}`, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seq, ok := findToken(tc.data, prefix)
			if seq != tc.seq || ok != tc.ok {
				t.Errorf("got %d %v, want %d %v", seq, ok, tc.seq, tc.ok)
			}
		})
	}
}

func TestExactLatencies(t *testing.T) {
	e := newTestEngine(t, Config{})
	e.AddPath(PathRedis, 1)
	e.AddPath(SSEPath("app-1"), 1)
	for i := range 10 {
		sent := t0.Add(time.Duration(i) * 200 * time.Millisecond)
		p := e.Next(sent)
		r := redisRec(sent.Add(time.Duration(90+i)*time.Microsecond), p.Payload)
		e.Observe(r)
		if r.Probe != p.Token || r.LatencyUS != int64(90+i) {
			t.Errorf("redis record %d: got probe %q latency %d, want %q %d", i, r.Probe, r.LatencyUS, p.Token, 90+i)
		}
		s := sseRec(sent.Add(time.Duration(i+1)*time.Millisecond), "app-1", 0, p.Payload)
		e.Observe(s)
		if s.LatencyUS != int64(i+1)*1000 {
			t.Errorf("sse record %d: got latency %d, want %d", i, s.LatencyUS, (i+1)*1000)
		}
	}
	snap := e.Snapshot(t0.Add(3 * time.Second))
	r := pathOf(t, snap, PathRedis)
	wantR := Dist{Count: 10, P50: 94 * time.Microsecond, P90: 98 * time.Microsecond, P95: 99 * time.Microsecond, P99: 99 * time.Microsecond, Max: 99 * time.Microsecond}
	if r.Latency != wantR {
		t.Errorf("redis latency: got %+v, want %+v", r.Latency, wantR)
	}
	s := pathOf(t, snap, "sse:app-1")
	wantS := Dist{Count: 10, P50: 5 * time.Millisecond, P90: 9 * time.Millisecond, P95: 10 * time.Millisecond, P99: 10 * time.Millisecond, Max: 10 * time.Millisecond}
	if s.Latency != wantS {
		t.Errorf("sse latency: got %+v, want %+v", s.Latency, wantS)
	}
	for _, p := range []PathStats{r, s} {
		if p.Sent != 10 || p.Delivered != 10 || p.Lost != 0 || p.Pending != 0 || p.Duplicates != 0 || p.Reordered != 0 {
			t.Errorf("%s counts: got %+v, want 10 sent, 10 delivered, nothing else", p.Path, p)
		}
	}
}

func TestLossAtTimeoutEdge(t *testing.T) {
	e := newTestEngine(t, Config{Timeout: 5 * time.Second})
	e.AddPath(SSEPath("app-1"), 1)
	var probes []Probe
	for i := range 4 {
		probes = append(probes, e.Next(t0.Add(time.Duration(i)*time.Second)))
	}
	// Probe 1 arrives exactly at its timeout: delivered. Probe 2 never.
	e.Observe(sseRec(t0.Add(5*time.Second), "app-1", 0, probes[0].Payload))
	e.Observe(sseRec(t0.Add(2*time.Second+time.Millisecond), "app-1", 0, probes[2].Payload))
	e.Observe(sseRec(t0.Add(3*time.Second+time.Millisecond), "app-1", 0, probes[3].Payload))

	tests := []struct {
		at                      time.Duration
		delivered, pending, los int64
	}{
		{4 * time.Second, 3, 1, 0},
		{6 * time.Second, 3, 1, 0},                 // probe 2 sent at 1s: exactly 5s old, still pending
		{6*time.Second + time.Nanosecond, 3, 0, 1}, // now lost
		{9*time.Second + time.Nanosecond, 3, 0, 1}, // all expired, no change
	}
	for _, tc := range tests {
		p := pathOf(t, e.Snapshot(t0.Add(tc.at)), "sse:app-1")
		if p.Delivered != tc.delivered || p.Pending != tc.pending || p.Lost != tc.los {
			t.Errorf("at %v: got delivered %d pending %d lost %d, want %d %d %d", tc.at, p.Delivered, p.Pending, p.Lost, tc.delivered, tc.pending, tc.los)
		}
	}
	// A delivery after expiry is late, not delivered.
	r := sseRec(t0.Add(10*time.Second), "app-1", 0, probes[1].Payload)
	e.Observe(r)
	p := pathOf(t, e.Snapshot(t0.Add(10*time.Second)), "sse:app-1")
	if p.Late != 1 || p.Delivered != 3 || p.Lost != 1 {
		t.Errorf("late delivery: got late %d delivered %d lost %d, want 1 3 1", p.Late, p.Delivered, p.Lost)
	}
	if r.Probe != probes[1].Token {
		t.Errorf("late record: got probe %q, want %q", r.Probe, probes[1].Token)
	}
}

func TestReportCountsPendingAsLost(t *testing.T) {
	e := newTestEngine(t, Config{})
	e.AddPath(PathRedis, 1)
	e.Next(t0)
	rep := e.Report(t0.Add(time.Second), ReportInput{}, DefaultBudgets())
	if rep.Pass || rep.Paths[0].Lost != 1 || rep.Paths[0].Delivered != 0 {
		t.Errorf("got pass %v path %+v, want fail with 1 lost", rep.Pass, rep.Paths[0])
	}
	want := "redis: delivered 0 of 1 (0%), below --min-delivery 100%"
	if len(rep.Failures) != 1 || rep.Failures[0].Message != want {
		t.Errorf("failures: got %q, want [%q]", rep.Failures, want)
	}
}

func TestDuplicatesAndReorder(t *testing.T) {
	e := newTestEngine(t, Config{})
	e.AddPath(SSEPath("app-1"), 1)
	var ps []Probe
	for i := range 4 {
		ps = append(ps, e.Next(t0.Add(time.Duration(i)*time.Millisecond)))
	}
	at := t0.Add(10 * time.Millisecond)
	for _, i := range []int{0, 0, 2, 1, 3, 3, 1} { // dup 1, 2 before 2 (reordered), dup 4, dup 2
		e.Observe(sseRec(at, "app-1", 0, ps[i].Payload))
	}
	p := pathOf(t, e.Snapshot(at), "sse:app-1")
	if p.Delivered != 4 || p.Duplicates != 3 || p.Reordered != 1 {
		t.Errorf("got delivered %d duplicates %d reordered %d, want 4 3 1", p.Delivered, p.Duplicates, p.Reordered)
	}
	// The first delivery alone is timed.
	if p.Latency.Count != 4 {
		t.Errorf("latency samples: got %d, want 4", p.Latency.Count)
	}
}

func TestFanoutK(t *testing.T) {
	const k = 3
	e := newTestEngine(t, Config{Timeout: time.Second})
	e.AddPath(SSEPath("app-1"), k)
	var ps []Probe
	for i := range 3 {
		ps = append(ps, e.Next(t0.Add(time.Duration(i)*100*time.Millisecond)))
	}
	for i, p := range ps {
		for c := range k {
			if i == 1 && c == 2 {
				continue // connection 2 misses probe 2
			}
			r := sseRec(p.SentAt.Add(time.Duration(c+1)*time.Millisecond), "app-1", c, p.Payload)
			e.Observe(r)
			if r.LatencyUS != int64(c+1)*1000 {
				t.Errorf("probe %d conn %d: got latency %d, want %d", i+1, c, r.LatencyUS, (c+1)*1000)
			}
		}
	}
	// Same probe on two connections is not a duplicate.
	p := pathOf(t, e.Snapshot(t0.Add(5*time.Second)), "sse:app-1")
	if p.Conns != k || p.Delivered != 2 || p.Lost != 1 || p.Duplicates != 0 {
		t.Errorf("got conns %d delivered %d lost %d dups %d, want 3 2 1 0", p.Conns, p.Delivered, p.Lost, p.Duplicates)
	}
	wantFan := Dist{Count: 2, P50: 3 * time.Millisecond, P90: 3 * time.Millisecond, P95: 3 * time.Millisecond, P99: 3 * time.Millisecond, Max: 3 * time.Millisecond}
	if p.Fanout != wantFan {
		t.Errorf("fanout: got %+v, want %+v", p.Fanout, wantFan)
	}
	if p.Latency.Count != 3 || p.Latency.Max != time.Millisecond {
		t.Errorf("first-delivery latency: got %+v, want 3 values of 1ms", p.Latency)
	}
	wantConns := []ConnStats{{0, 3, 0, 0}, {1, 3, 0, 0}, {2, 2, 1, 0}}
	if fmt.Sprint(p.ConnStats) != fmt.Sprint(wantConns) {
		t.Errorf("conns: got %v, want %v", p.ConnStats, wantConns)
	}
	rep := BuildReport(e.Snapshot(t0.Add(5*time.Second)), ReportInput{}, DefaultBudgets())
	if len(rep.Fanout) != 1 || rep.Fanout[0].Connections != 3 || rep.Fanout[0].Complete != 2 ||
		rep.Fanout[0].P50MS != 3 || fmt.Sprint(rep.Fanout[0].Missed) != "[{2 1}]" {
		t.Errorf("fanout report: got %+v", rep.Fanout)
	}
	want := "sse:app-1: delivered 2 of 3 to all 3 connections (66.7%), below --min-delivery 100%; 1 connection missed probes (#2 missed 1)"
	if len(rep.Failures) != 1 || rep.Failures[0].Message != want {
		t.Errorf("failures: got %q, want [%q]", rep.Failures, want)
	}
}

func TestPathAddedLaterAndAutoAdded(t *testing.T) {
	e := newTestEngine(t, Config{})
	e.AddPath(PathRedis, 1)
	p1 := e.Next(t0)
	e.AddPath(SSEPath("late"), 1)
	p2 := e.Next(t0)
	e.Observe(sseRec(t0.Add(time.Millisecond), "late", 0, p1.Payload)) // before the path was added: not counted
	e.Observe(sseRec(t0.Add(time.Millisecond), "late", 0, p2.Payload))
	e.Observe(sseRec(t0.Add(time.Millisecond), "auto", 0, p2.Payload))
	s := e.Snapshot(t0.Add(10 * time.Second))
	if p := pathOf(t, s, "sse:late"); p.Sent != 1 || p.Delivered != 1 || p.Lost != 0 {
		t.Errorf("late path: got sent %d delivered %d lost %d, want 1 1 0", p.Sent, p.Delivered, p.Lost)
	}
	if p := pathOf(t, s, "sse:auto"); p.Sent != 1 || p.Delivered != 1 {
		t.Errorf("auto path: got sent %d delivered %d, want 1 1", p.Sent, p.Delivered)
	}
	if p := pathOf(t, s, PathRedis); p.Sent != 2 || p.Lost != 2 {
		t.Errorf("redis path: got sent %d lost %d, want 2 2", p.Sent, p.Lost)
	}
}

func TestForeignTokensIgnored(t *testing.T) {
	e := newTestEngine(t, Config{})
	e.AddPath(PathRedis, 1)
	e.Next(t0)
	for _, data := range []string{"fsp-deadbeef-1", "fsp-a1b2c3d4-2" /* never sent */} {
		r := redisRec(t0, data)
		e.Observe(r)
		if r.Probe != "" {
			t.Errorf("%s: got probe %q, want none", data, r.Probe)
		}
	}
	// State and comment records are never matched.
	e.Observe(&feed.Record{TS: t0, Source: feed.SourceSSE, Kind: feed.KindComment, Endpoint: "x", Data: "fsp-a1b2c3d4-1"})
	if p := pathOf(t, e.Snapshot(t0), PathRedis); p.Delivered != 0 {
		t.Errorf("delivered: got %d, want 0", p.Delivered)
	}
}

func TestHopMatching(t *testing.T) {
	tests := []struct {
		name, key, redis, sse string
		match                 bool
	}{
		{"equal data", "", `{"storyId":"s1"}`, `{"storyId":"s1"}`, true},
		{"different data", "", `{"storyId":"s1"}`, `{"storyId":"s1" }`, false},
		{"by key, re-encoded", "storyId", `{"storyId":"s1","n":1}`, `{ "n": 1, "storyId" : "s1" }`, true},
		{"by key, unicode escape", "storyId", `{"storyId":"é"}`, `{"storyId":"\u00e9"}`, true},
		{"by key, re-wrapped and escaped", "storyId", `{"storyId":"s1"}`, `{"type":"x","payload":"{\"storyId\":\"s1\"}"}`, true},
		{"by key, nested", "story.id", `{"story":{"id":7}}`, `{"story":{"id":7,"x":true}}`, true},
		{"by key, number vs string", "storyId", `{"storyId":7}`, `{"storyId":"7"}`, false},
		{"by key, other value", "storyId", `{"storyId":"s1"}`, `{"storyId":"s2"}`, false},
		{"by key, missing", "storyId", `{"storyId":"s1"}`, `{"id":"s1"}`, false},
		{"by key, not json", "storyId", `storyId s1`, `storyId s1`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEngine(t, Config{MatchKey: tc.key})
			e.Observe(redisRec(t0, tc.redis))
			r := sseRec(t0.Add(1500*time.Microsecond), "app-1", 0, tc.sse)
			e.Observe(r)
			if r.HasHop != tc.match {
				t.Fatalf("HasHop: got %v, want %v", r.HasHop, tc.match)
			}
			if !tc.match {
				return
			}
			if r.HopUS != 1500 || r.Probe != "" {
				t.Errorf("got hop %d probe %q, want 1500 and no probe", r.HopUS, r.Probe)
			}
			p := pathOf(t, e.Snapshot(t0.Add(2*time.Second)), "sse:app-1")
			if p.Hop.Count != 1 || p.Hop.P50 != 1500*time.Microsecond {
				t.Errorf("hop dist: got %+v, want one value of 1.5ms", p.Hop)
			}
		})
	}
}

func TestHopBounds(t *testing.T) {
	e := newTestEngine(t, Config{HopEntries: 3, HopMaxAge: time.Minute})
	for i := range 4 {
		e.Observe(redisRec(t0.Add(time.Duration(i)*time.Second), fmt.Sprintf("m%d", i)))
	}
	check := func(at time.Time, data string, want bool) {
		t.Helper()
		r := sseRec(at, "a", 0, data)
		e.Observe(r)
		if r.HasHop != want {
			t.Errorf("%s at %v: got HasHop %v, want %v", data, at.Sub(t0), r.HasHop, want)
		}
	}
	check(t0.Add(5*time.Second), "m0", false) // evicted by count
	check(t0.Add(5*time.Second), "m1", true)
	check(t0.Add(5*time.Second), "m1", true)           // several endpoints/connections match one message
	check(t0.Add(61500*time.Millisecond), "m1", false) // older than a minute
	check(t0.Add(61500*time.Millisecond), "m3", true)
	// The same data published again is timed from its latest sighting.
	e.Observe(redisRec(t0.Add(62*time.Second), "m3"))
	r := sseRec(t0.Add(62*time.Second+time.Millisecond), "a", 0, "m3")
	e.Observe(r)
	if r.HopUS != 1000 {
		t.Errorf("republished: got hop %d, want 1000", r.HopUS)
	}
	if n := e.Snapshot(t0.Add(62 * time.Second)).HopEntries; n > 3 {
		t.Errorf("hop entries: got %d, want at most 3", n)
	}
}

// TestHopMatchingOff: with HopEntries < 0 (no SSE source) Redis messages
// are not remembered, and probes still match.
func TestHopMatchingOff(t *testing.T) {
	e := newTestEngine(t, Config{HopEntries: -1})
	e.Observe(redisRec(t0, "m0"))
	if n := e.Snapshot(t0).HopEntries; n != 0 {
		t.Errorf("hop entries: got %d, want 0", n)
	}
	r := sseRec(t0.Add(time.Millisecond), "a", 0, "m0")
	e.Observe(r)
	if r.HasHop {
		t.Errorf("got a hop time with hop matching off")
	}
	p := e.Next(t0)
	e.MarkSent(p.Seq, t0)
	pr := redisRec(t0.Add(time.Millisecond), p.Payload)
	e.Observe(pr)
	if pr.Probe == "" || pr.LatencyUS != 1000 {
		t.Errorf("probe with hop matching off: got probe %q latency %d µs, want a probe at 1000", pr.Probe, pr.LatencyUS)
	}
}

func TestHistogram(t *testing.T) {
	var h Histogram
	if h.Percentile(50) != 0 || h.Dist() != (Dist{}) {
		t.Errorf("empty: got %d %+v, want zero", h.Percentile(50), h.Dist())
	}
	for _, v := range []int64{-5, 10, 20, 30, 40, int64(2 * time.Hour / time.Microsecond)} {
		h.Record(v)
	}
	tests := []struct {
		p    float64
		want int64
	}{{0, 0}, {50, 20}, {80, 40}, {100, histMaxUS}}
	for _, tc := range tests {
		if got := h.Percentile(tc.p); got != tc.want {
			t.Errorf("Percentile(%v): got %d, want %d", tc.p, got, tc.want)
		}
	}
	if h.Clamped() != 2 || h.Count() != 6 || h.Max() != histMaxUS {
		t.Errorf("got clamped %d count %d max %d, want 2 6 %d", h.Clamped(), h.Count(), h.Max(), histMaxUS)
	}
	c := h.Clone()
	c.Record(1)
	if h.Count() != 6 || c.Count() != 7 {
		t.Errorf("clone shares state: got %d and %d, want 6 and 7", h.Count(), c.Count())
	}
	// Past exactCap values the HDR estimate is used, within its 3 digits.
	var big Histogram
	for i := range int64(exactCap + 1000) {
		big.Record(200000 + i%100)
	}
	if got := big.Percentile(50); got < 200000 || got > 200100 {
		t.Errorf("HDR p50: got %d, want about 200050", got)
	}
	if big.Dist().Max != 200099*time.Microsecond {
		t.Errorf("HDR max: got %v, want exact 200.099ms", big.Dist().Max)
	}
}

func TestWindow(t *testing.T) {
	e := newTestEngine(t, Config{WindowSeconds: 3})
	e.AddPath(PathRedis, 1)
	for i := range 6 {
		sent := t0.Add(time.Duration(i) * 500 * time.Millisecond)
		p := e.Next(sent)
		e.Observe(redisRec(sent.Add(time.Duration(i+1)*time.Millisecond), p.Payload))
	}
	// Seconds 0,1,2 hold probes 1-2, 3-4, 5-6. At second 3 the window is 1,2,3.
	w := pathOf(t, e.Snapshot(t0.Add(3*time.Second)), PathRedis).LatencyWindow
	got := fmt.Sprint(len(w), w[0].Count, w[0].P50, w[1].Count, w[1].P50, w[1].Max, w[2].Count)
	if want := fmt.Sprint(3, 2, 3*time.Millisecond, 2, 5*time.Millisecond, 6*time.Millisecond, 0); got != want {
		t.Errorf("window: got %s, want %s", got, want)
	}
	if !w[2].At.Equal(t0.Add(3 * time.Second)) {
		t.Errorf("last point: got %v, want %v", w[2].At, t0.Add(3*time.Second))
	}
}

func TestSnapshotIsACopy(t *testing.T) {
	e := newTestEngine(t, Config{})
	e.AddPath(SSEPath("a"), 2)
	p := e.Next(t0)
	s1 := e.Snapshot(t0)
	e.Observe(sseRec(t0.Add(time.Millisecond), "a", 0, p.Payload))
	s1.Paths[0].ConnStats[0].Received = 99
	s2 := e.Snapshot(t0)
	if s2.Paths[0].ConnStats[0].Received != 1 || s2.Paths[0].Pending != 1 {
		t.Errorf("got %+v, want conn 0 received 1 and 1 pending", s2.Paths[0])
	}
}

func TestConcurrentUse(t *testing.T) {
	e := newTestEngine(t, Config{Timeout: 50 * time.Millisecond})
	e.AddPath(PathRedis, 1)
	e.AddPath(SSEPath("a"), 4)
	payloads := make(chan string, 1000)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(payloads)
		for i := range 500 {
			payloads <- e.Next(t0.Add(time.Duration(i) * time.Millisecond)).Payload
		}
	})
	for c := range 4 {
		wg.Go(func() {
			for i := range 500 {
				e.Observe(sseRec(t0.Add(time.Duration(i)*time.Millisecond), "a", c, fmt.Sprintf("organic %d", i)))
			}
		})
	}
	wg.Go(func() {
		for p := range payloads {
			e.Observe(redisRec(t0, p))
		}
	})
	wg.Go(func() {
		for i := range 200 {
			e.Snapshot(t0.Add(time.Duration(i) * time.Millisecond))
		}
	})
	wg.Wait()
	if s := e.Snapshot(t0.Add(time.Hour)); s.Sent != 500 {
		t.Errorf("sent: got %d, want 500", s.Sent)
	}
}

func BenchmarkObserve(b *testing.B) {
	e := NewEngine(Config{RunID: runID})
	e.AddPath(PathRedis, 1)
	e.AddPath(SSEPath("app-1"), 1)
	const n = 1024
	recs := make([]feed.Record, n)
	for i := range n {
		p := e.Next(t0)
		recs[i] = *sseRec(t0.Add(time.Millisecond), "app-1", 0, `{"type":"story","payload":`+fmt.Sprintf("%q", p.Payload)+`}`)
	}
	b.Run("probe", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			r := recs[i%n]
			e.Observe(&r)
		}
	})
	organic := sseRec(t0, "app-1", 0, `{"storyId":"s-123456","title":"`+strings.Repeat("x", 200)+`"}`)
	b.Run("organic", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r := *organic
			e.Observe(&r)
		}
	})
	byKey := NewEngine(Config{RunID: runID, MatchKey: "storyId"})
	byKey.Observe(redisRec(t0, organic.Data))
	b.Run("organic-match-key", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r := *organic
			byKey.Observe(&r)
			if !r.HasHop {
				b.Fatal("no hop")
			}
		}
	})
}

func TestRedisPathFirst(t *testing.T) {
	e := newTestEngine(t, Config{})
	e.AddPath(SSEPath("b"), 1)
	e.AddPath(SSEPath("a"), 1)
	e.AddPath(PathRedis, 1)
	var got []string
	for _, p := range e.Snapshot(t0).Paths {
		got = append(got, p.Path)
	}
	if want := "[redis sse:b sse:a]"; fmt.Sprint(got) != want {
		t.Errorf("got %v, want %s", got, want)
	}
}

func TestPending(t *testing.T) {
	e := newTestEngine(t, Config{Timeout: time.Second})
	e.AddPath(PathRedis, 1)
	e.AddPath(SSEPath("a"), 2)
	p := e.Next(t0)
	tests := []struct {
		rec  *feed.Record
		at   time.Duration
		want int
	}{
		{nil, 0, 2},
		{redisRec(t0.Add(time.Millisecond), p.Payload), time.Millisecond, 1},
		{sseRec(t0.Add(time.Millisecond), "a", 0, p.Payload), time.Millisecond, 1}, // one of two connections
		{sseRec(t0.Add(time.Millisecond), "a", 1, p.Payload), time.Millisecond, 0},
	}
	for i, tc := range tests {
		if tc.rec != nil {
			e.Observe(tc.rec)
		}
		if got := e.Pending(t0.Add(tc.at)); got != tc.want {
			t.Errorf("step %d: got %d pending, want %d", i, got, tc.want)
		}
	}
	e.Next(t0)
	if got := e.Pending(t0.Add(2 * time.Second)); got != 0 {
		t.Errorf("after the timeout: got %d pending, want 0", got)
	}
}

func BenchmarkSnapshot(b *testing.B) {
	e := NewEngine(Config{RunID: runID})
	e.AddPath(PathRedis, 1)
	e.AddPath(SSEPath("app-1"), 1)
	for i := range 5000 {
		sent := t0.Add(time.Duration(i) * time.Millisecond)
		p := e.Next(sent)
		e.Observe(redisRec(sent.Add(time.Duration(i%700)*time.Microsecond), p.Payload))
		e.Observe(sseRec(sent.Add(time.Duration(i%900)*time.Microsecond), "app-1", 0, p.Payload))
	}
	now := t0.Add(6 * time.Second)
	b.ReportAllocs()
	for b.Loop() {
		e.Snapshot(now)
	}
}
