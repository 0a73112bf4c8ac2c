package session

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/redistest"
	"github.com/fanscope/fanscope/pollx"
	"github.com/fanscope/fanscope/redisx"
	"github.com/fanscope/fanscope/wsx"
)

// fakeDoor is a delivery path written against the Source contract alone:
// it relays what Redis publishes on one channel as event records of a
// WebSocket-kind path, the way any new door would.
type fakeDoor struct {
	redisURL  string
	channel   string
	connected chan struct{}
	mu        sync.Mutex
	events    uint64
	state     string
}

// Every door's client is a Source.
var (
	_ Source = (*fakeDoor)(nil)
	_ Source = (*redisSource)(nil)
	_ Source = (*wsx.Client)(nil)
	_ Source = (*wsx.SocketIO)(nil)
	_ Source = (*pollx.Client)(nil)
)

func (f *fakeDoor) Path() string               { return feed.PathName(feed.SourceWS, "fake") }
func (f *fakeDoor) Connected() <-chan struct{} { return f.connected }
func (f *fakeDoor) Status() feed.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return feed.Status{Source: feed.SourceWS, Name: "fake", URL: "ws://fake", State: f.state, Events: f.events}
}

func (f *fakeDoor) Run(ctx context.Context, sink feed.Sink) error {
	c, err := redisx.Open(ctx, redisx.Options{URLs: []string{f.redisURL}, ClientName: "fake-door"})
	if err != nil {
		return err
	}
	defer c.Close()
	relay := feed.SinkFunc(func(r feed.Record) {
		if r.Kind != feed.KindMessage {
			return
		}
		f.mu.Lock()
		f.events++
		f.mu.Unlock()
		sink.Emit(feed.Record{TS: time.Now(), Source: feed.SourceWS, Kind: feed.KindEvent, Endpoint: "fake", Type: "message", Data: r.Data})
	})
	sub, err := c.Subscribe(ctx, redisx.Subscription{Channels: []string{f.channel}}, relay)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.state = feed.StateConnected
	f.mu.Unlock()
	close(f.connected)
	<-sub.Done()
	return nil
}

// TestSourceContract plugs a fake door into a session: its records reach
// the consumers (the NDJSON tail prints), the probe engine (a probe is
// delivered on its path) and the snapshot watch and serve read.
func TestSourceContract(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	door := &fakeDoor{redisURL: srv.URL(), channel: "story:published", connected: make(chan struct{})}
	s, err := Open(ctx, Config{
		Redis:        &redisx.Options{URLs: []string{srv.URL()}},
		Subscription: redisx.Subscription{Channels: []string{"story:published"}},
		Sources:      []Source{door},
		ProbeChannel: "story:published",
		RingSize:     100,
	})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var lines []string
	s.OnBatch(func(b []feed.Record) {
		mu.Lock()
		defer mu.Unlock()
		for i := range b {
			lines = append(lines, string(feed.AppendJSON(nil, &b[i])))
		}
	})
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.WaitConnected(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SendProbe(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var snap Snapshot
	for {
		snap = s.Snapshot(time.Now())
		if len(snap.Probes.Paths) == 2 && snap.Probes.Paths[1].Delivered == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if p := snap.Probes.Paths[1]; p.Path != "ws:fake" || p.Delivered != 1 || p.Latency.Count != 1 {
		t.Errorf("probe engine: got path %+v, want ws:fake with the probe delivered", p)
	}
	if len(snap.Statuses) != 2 || snap.Statuses[1].Path() != "ws:fake" || !snap.Statuses[1].Up() || snap.Statuses[1].Events != 1 {
		t.Errorf("snapshot statuses: got %+v, want redis then ws:fake connected with 1 event", snap.Statuses)
	}
	var inRing bool
	for _, r := range s.Records(0) {
		inRing = inRing || (r.Source == feed.SourceWS && r.Probe != "")
	}
	if !inRing {
		t.Errorf("ring: no ws record carrying the probe")
	}
	mu.Lock()
	defer mu.Unlock()
	var printed bool
	for _, l := range lines {
		printed = printed || (strings.Contains(l, `"source":"ws","kind":"event","endpoint":"fake"`) && strings.Contains(l, `"probe":"fsp-`))
	}
	if !printed {
		t.Errorf("consumer: no NDJSON line for the ws event with its probe; got %q", lines)
	}
}
