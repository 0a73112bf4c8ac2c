package session

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/redisx"
)

// TestSessionCapsConnectsInFlight opens more SSE connections than may
// connect at once to a server that answers a request only once no new
// request has arrived for a while: without the cap every connection would
// be waiting on it at the same time, with it no more than
// sseConnectsInFlight are, and every connection connects.
func TestSessionCapsConnectsInFlight(t *testing.T) {
	old := connectHold
	connectHold = time.Minute // slots are released by connecting only
	t.Cleanup(func() { connectHold = old })

	const k = 3*connectsInFlight + 17
	var mu sync.Mutex
	waiting, most, served := 0, 0, 0
	var last time.Time // when the last request arrived
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		waiting++
		most = max(most, waiting)
		last = time.Now()
		mu.Unlock()
		for quiet := false; !quiet; {
			select {
			case <-time.After(20 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
			mu.Lock()
			quiet = time.Since(last) > 200*time.Millisecond
			mu.Unlock()
		}
		mu.Lock()
		waiting--
		served++
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, Config{Endpoints: []Endpoint{{Kind: feed.SourceSSE, Name: "app", URL: srv.URL}}, Conns: k})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.WaitConnected(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if most > connectsInFlight || served != k {
		t.Errorf("at most %d requests waiting and %d served, want %d and %d", most, served, connectsInFlight, k)
	}
}

// TestWaitSSERestartsOnProgress: six connections to a server that answers
// one request every 300 ms take 1.8 s to connect, longer than the 1 s
// wait, which restarts whenever one connects; a seventh that is never
// answered ends the wait 1 s after the sixth connected.
func TestWaitSSERestartsOnProgress(t *testing.T) {
	var mu sync.Mutex
	n := 0
	start := time.Now()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		turn, at := n, start.Add(time.Duration(n)*300*time.Millisecond)
		mu.Unlock()
		if turn > 6 {
			<-r.Context().Done()
			return
		}
		select {
		case <-time.After(time.Until(at)):
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)

	for _, clients := range []int{6, 7} {
		mu.Lock()
		n = 0
		start = time.Now()
		mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		s, err := Open(ctx, Config{Endpoints: []Endpoint{{Kind: feed.SourceSSE, Name: "app", URL: srv.URL}}, Conns: clients})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
		err = s.WaitConnected(ctx, time.Second)
		took := time.Since(start)
		s.Close()
		cancel()
		if clients == 6 && err != nil {
			t.Errorf("6 connections answered 300 ms apart: %v", err)
		}
		if clients == 7 && (err == nil || took < 2800*time.Millisecond) {
			t.Errorf("7th connection never answered: got %v after %v, want an error after at least 1.8 s + 1 s", err, took)
		}
	}
}

func TestWithProbeChannel(t *testing.T) {
	tests := []struct {
		sub     redisx.Subscription
		channel string
		shard   bool
		want    []string
	}{
		{redisx.Subscription{Channels: []string{"a"}}, "a", false, []string{"a"}},
		{redisx.Subscription{Channels: []string{"a"}}, "p", false, []string{"a", "p"}},
		{redisx.Subscription{Patterns: []string{"p*"}}, "p1", false, nil},
		{redisx.Subscription{ShardChannels: []string{"s"}}, "s", true, nil},
		{redisx.Subscription{Channels: []string{"a"}}, "", false, []string{"a"}},
	}
	for _, tt := range tests {
		got := withProbeChannel(tt.sub, tt.channel, tt.shard)
		if fmt.Sprint(got.Channels) != fmt.Sprint(tt.want) {
			t.Errorf("%+v + %q: got channels %v, want %v", tt.sub, tt.channel, got.Channels, tt.want)
		}
	}
}
