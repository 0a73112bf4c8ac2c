package probes_test

// A poll body is a snapshot: a probe token counts once, at the first body
// that holds it; its presence in later bodies is not a duplicate, and one
// body may bring several probes at once.

import (
	"fmt"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/probes"
)

func pollBody(tokens ...string) string {
	s := "["
	for i, t := range tokens {
		if i > 0 {
			s += ","
		}
		s += fmt.Sprintf(`{"data":"{\"fanscope_probe\":\"%s\"}"}`, t)
	}
	return s + "]"
}

func TestProbeSnapshotLaterBodiesAreNotDuplicates(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	e := probes.NewEngine(probes.Config{RunID: "0123abcd", HopEntries: -1})
	e.AddPath("poll:app", 1)
	p1 := e.Next(t0)
	obs := func(at time.Duration, body string) {
		r := feed.Record{TS: t0.Add(at), Source: feed.SourcePoll, Kind: feed.KindEvent, Endpoint: "app", Data: body}
		e.Observe(&r)
	}
	obs(100*time.Millisecond, pollBody(p1.Token))
	p2 := e.Next(t0.Add(time.Second))
	obs(1100*time.Millisecond, pollBody(p1.Token, p2.Token)) // the next snapshot still holds p1
	s := e.Snapshot(t0.Add(2 * time.Second))
	ps := s.Paths[0]
	if ps.Duplicates != 0 {
		t.Errorf("duplicates = %d, want 0: p1 in a later snapshot is not a duplicate", ps.Duplicates)
	}
	if ps.Delivered != 2 {
		t.Errorf("delivered = %d, want 2: the second body holds p2 for the first time", ps.Delivered)
	}
}

func TestProbeSnapshotSeveralNewTokensInOneBody(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	e := probes.NewEngine(probes.Config{RunID: "0123abcd", HopEntries: -1})
	e.AddPath("poll:app", 1)
	p1 := e.Next(t0)
	p2 := e.Next(t0.Add(time.Second))
	p3 := e.Next(t0.Add(2 * time.Second))
	// One poll every 5 s: three probes arrive in one body.
	r := feed.Record{TS: t0.Add(5 * time.Second), Source: feed.SourcePoll, Kind: feed.KindEvent, Endpoint: "app", Data: pollBody(p3.Token, p2.Token, p1.Token)}
	e.Observe(&r)
	ps := e.Snapshot(t0.Add(5 * time.Second)).Paths[0]
	if ps.Delivered != 3 || ps.Latency.Count != 3 {
		t.Errorf("delivered = %d, latencies = %d, want 3 and 3 (5s, 4s, 3s)", ps.Delivered, ps.Latency.Count)
	}
}
