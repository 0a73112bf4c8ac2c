package probes

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
)

// none marks a delivery that must not be annotated.
const none = math.MinInt64

func TestPublishesAnnotate(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	ms := time.Millisecond
	pub := func(data string, at time.Duration) feed.Record {
		return feed.Record{TS: t0.Add(at + 5*ms), Source: feed.SourceMonitor, Kind: feed.KindPublish, Channel: "story:published", Data: data}
	}
	type step struct {
		add     *feed.Record
		at      time.Duration // the publish's corrected time, for add
		deliver feed.Record
		want    int64 // publish_us; none: not annotated
	}
	p1, p2 := pub(`{"storyId":"s1","v":1}`, 0), pub(`{"storyId":"s2"}`, 10*ms)
	sse := func(data string, at time.Duration) feed.Record {
		return feed.Record{TS: t0.Add(at), Source: feed.SourceSSE, Kind: feed.KindEvent, Endpoint: "app-1", Data: data}
	}
	tests := []struct {
		name     string
		matchKey string
		steps    []step
	}{
		{"equal data on every path", "", []step{
			{add: &p1, at: 0, deliver: feed.Record{TS: t0.Add(ms), Source: feed.SourceRedis, Kind: feed.KindMessage, Data: p1.Data}, want: 1000},
			{deliver: sse(p1.Data, 100*ms), want: 100000},
			{deliver: feed.Record{TS: t0.Add(120 * ms), Source: feed.SourceWS, Kind: feed.KindEvent, Data: p1.Data}, want: 120000},
			{deliver: sse(`{"storyId":"s1"}`, 100*ms), want: none},
		}},
		{"match key", "storyId", []step{
			{add: &p1, at: 0},
			{add: &p2, at: 10 * ms},
			{deliver: sse(`{"type":"story","storyId":"s1"}`, 40*ms), want: 40000},
			{deliver: sse(`{"storyId":"s2"}`, 40*ms), want: 30000},
			{deliver: sse(`{"id":"s2"}`, 40*ms), want: none},
		}},
		{"probes, comments and state are left alone", "", []step{
			{add: &p1, at: 0},
			{deliver: feed.Record{TS: t0.Add(ms), Source: feed.SourceSSE, Kind: feed.KindEvent, Data: p1.Data, Probe: "fsp-1-1"}, want: none},
			{deliver: feed.Record{TS: t0.Add(ms), Source: feed.SourceSSE, Kind: feed.KindComment, Data: p1.Data}, want: none},
			{deliver: feed.Record{TS: t0.Add(ms), Source: feed.SourceMonitor, Kind: feed.KindPublish, Data: p1.Data}, want: none},
		}},
		{"only publish records are remembered", "", []step{
			{add: &feed.Record{Source: feed.SourceRedis, Kind: feed.KindMessage, Data: "x"}, at: 0},
			{deliver: sse("x", ms), want: none},
		}},
		{"too old", "", []step{
			{add: &p1, at: 0},
			{deliver: sse(p1.Data, time.Minute+ms), want: none},
		}},
		{"the latest publish of equal data counts", "", []step{
			{add: &p1, at: 0},
			{add: &p1, at: 50 * ms},
			{deliver: sse(p1.Data, 60*ms), want: 10000},
		}},
		{"clock error shows as it is", "", []step{
			{add: &p1, at: 2 * ms},
			{deliver: sse(p1.Data, ms), want: -1000},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewPublishes(tt.matchKey, 0, 0)
			for i, s := range tt.steps {
				if s.add != nil {
					p.Add(s.add, t0.Add(s.at))
					if s.deliver.TS.IsZero() {
						continue
					}
				}
				r := s.deliver
				ok := p.Annotate(&r)
				switch {
				case s.want == none && (ok || r.HasPublish):
					t.Errorf("step %d: annotated with %d µs, want none", i, r.PublishUS)
				case s.want != none && (!ok || !r.HasPublish || r.PublishUS != s.want):
					t.Errorf("step %d: got %v %d µs, want %d µs", i, r.HasPublish, r.PublishUS, s.want)
				}
			}
		})
	}
}

func TestPublishesBounded(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	p := NewPublishes("", 100, time.Second)
	for i := 0; i < 1000; i++ {
		r := feed.Record{Source: feed.SourceMonitor, Kind: feed.KindPublish, Data: fmt.Sprint(i)}
		p.Add(&r, t0.Add(time.Duration(i)*time.Millisecond))
	}
	if p.Len() != 100 {
		t.Fatalf("remembers %d publishes, want 100", p.Len())
	}
	old := feed.Record{TS: t0.Add(time.Second), Source: feed.SourceSSE, Kind: feed.KindEvent, Data: "5"}
	if p.Annotate(&old) {
		t.Errorf("an evicted publish was matched")
	}
	recent := feed.Record{TS: t0.Add(time.Second), Source: feed.SourceSSE, Kind: feed.KindEvent, Data: "999"}
	if !p.Annotate(&recent) || recent.PublishUS != 1000 {
		t.Errorf("got %v %d µs, want 1000 µs", recent.HasPublish, recent.PublishUS)
	}
	// Age: one more publish much later evicts everything older than a second.
	late := feed.Record{Source: feed.SourceMonitor, Kind: feed.KindPublish, Data: "late"}
	p.Add(&late, t0.Add(time.Hour))
	if p.Len() != 1 {
		t.Errorf("remembers %d publishes after an hour, want 1", p.Len())
	}
}

// TestPublishesTimeEarlyDeliveries: a delivery that arrives before its
// PUBLISH's MONITOR line (fanscope's own subscription often wins that
// race) is timed when the MONITOR line comes, once, and only within a
// short window.
func TestPublishesTimeEarlyDeliveries(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	p := NewPublishes("", 0, 0)
	early := feed.Record{TS: t0.Add(3 * time.Millisecond), Source: feed.SourceSSE, Kind: feed.KindEvent, Endpoint: "app", Data: `{"storyId":"s1"}`}
	if p.Annotate(&early) {
		t.Fatalf("annotated before the publish was seen")
	}
	stale := feed.Record{TS: t0.Add(-10 * time.Second), Source: feed.SourceRedis, Kind: feed.KindMessage, Data: `{"storyId":"s1"}`}
	p.Annotate(&stale)
	pub := feed.Record{TS: t0.Add(5 * time.Millisecond), Source: feed.SourceMonitor, Kind: feed.KindPublish, Channel: "c", Data: `{"storyId":"s1"}`}
	late := p.Add(&pub, t0.Add(time.Millisecond))
	if len(late) != 1 || late[0].Path != "sse:app" || late[0].US != 2000 {
		t.Errorf("got %+v, want sse:app timed at 2000 µs (the stale one left out)", late)
	}
	if again := p.Add(&pub, t0.Add(time.Millisecond)); len(again) != 0 {
		t.Errorf("a second publish of the same payload timed %+v again", again)
	}
}
