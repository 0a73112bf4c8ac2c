package relay

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fanscope/fanscope/internal/redistest"
	"github.com/fanscope/fanscope/redisx"
)

// TestRedisMessagesBecomeEvents runs the whole path against a real
// redis-server: PUBLISH → redisx subscriber → Relay.Emit → SSE.
func TestRedisMessagesBecomeEvents(t *testing.T) {
	srv := redistest.Start(t)
	r := startRelay(t, Config{History: 100, KeepAlive: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rc, err := redisx.Open(ctx, redisx.Options{URLs: []string{srv.URL()}})
	if err != nil {
		t.Fatalf("open redis: %v", err)
	}
	defer rc.Close()
	sub, err := rc.Subscribe(ctx, redisx.Subscription{Channels: []string{"story:published"}, Patterns: []string{"news:*"}}, r)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	defer func() { cancel(); <-sub.Done() }()

	c := mustDial(t, r.addr, DefaultPath, nil)
	waitConnections(t, r, 1)
	tests := []struct {
		channel, payload string
		want             wantEvent
	}{
		{"story:published", `{"storyId":"s1","title":"A"}`, wantEvent{"story-published", "1", `{"storyId":"s1","title":"A"}`}},
		{"news:today", "first line\nsecond line", wantEvent{"news-today", "2", "first line\nsecond line"}},
		{"story:published", "crlf\r\nline", wantEvent{"story-published", "3", "crlf\nline"}},
		{"story:other", "not subscribed", wantEvent{}},
		{"news:a:b", strings.Repeat("z", 100<<10), wantEvent{"news-a-b", "4", strings.Repeat("z", 100<<10)}},
	}
	for _, tt := range tests {
		n, err := rc.Publish(ctx, tt.channel, tt.payload)
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
		if tt.want.typ == "" {
			if n != 0 {
				t.Fatalf("publish to %s: got %d receivers, want 0", tt.channel, n)
			}
			continue
		}
		expectEvents(t, c, tt.want)
	}
	st := r.Stats()
	if st.EventsRelayed != 4 || st.PerChannel["story:published"] != 2 || st.PerChannel["news:today"] != 1 {
		t.Errorf("stats: got %+v, want 4 relayed, story:published 2, news:today 1", st)
	}
	if !strings.Contains(r.logs.String(), "state=subscribed") {
		t.Errorf("log lacks the redis subscribed state:\n%s", r.logs.String())
	}
}
