package session

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/redistest"
	"github.com/fanscope/fanscope/redisx"
)

// TestOrganicSilence: an endpoint that relayed the channel's real traffic
// and then stops receiving it while Redis goes on carrying it is named in
// the problems, without any probe, even though its keep-alives keep it
// connected; it is healthy again once events arrive.
func TestOrganicSilence(t *testing.T) {
	old := silenceAfter
	silenceAfter = 300 * time.Millisecond
	t.Cleanup(func() { silenceAfter = old })

	srv := redistest.Start(t)
	events := make(chan string, 16)
	sse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case d := <-events:
				fmt.Fprintf(w, "data: %s\n\n", d)
			case <-tick.C:
				fmt.Fprint(w, ": ping\n\n")
			}
			w.(http.Flusher).Flush()
		}
	}))
	defer sse.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, Config{
		Redis:        &redisx.Options{URLs: []string{srv.URL()}},
		Subscription: redisx.Subscription{Channels: []string{"story:published"}},
		Endpoints:    []Endpoint{{Kind: feed.SourceSSE, Name: "app", URL: sse.URL}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.WaitConnected(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	problems := func() string { return strings.Join(s.Snapshot(time.Now()).Problems, "; ") }
	publish := func(i int, relay bool) {
		msg := fmt.Sprintf(`{"storyId":"s%d"}`, i)
		srv.CLI("PUBLISH", "story:published", msg)
		time.Sleep(20 * time.Millisecond) // the Redis copy first, as a relay would
		if relay {
			events <- msg
		}
	}
	publish(1, true)
	publish(2, true)
	time.Sleep(100 * time.Millisecond)
	if p := problems(); p != "" {
		t.Fatalf("while relaying: got problems %q, want none", p)
	}
	for i := 3; i < 10; i++ {
		publish(i, false)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(problems(), "sse:app: no events for") {
		if time.Now().After(deadline) {
			t.Fatalf("got problems %q, want sse:app named as silent", problems())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if p := problems(); !strings.Contains(p, "while Redis carried 7 messages") {
		t.Errorf("got %q, want the 7 messages Redis carried named", p)
	}
	publish(10, true)
	for strings.Contains(problems(), "no events") {
		if time.Now().After(deadline) {
			t.Fatalf("still silent after an event: %q", problems())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
