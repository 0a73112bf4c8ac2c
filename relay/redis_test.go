package relay

import (
	"context"
	"io"
	"net/http"
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

	// Disconnect, miss two messages, reconnect with Last-Event-ID: exactly
	// those two arrive, then live traffic.
	c.conn.Close()
	waitConnections(t, r, 0)
	for _, p := range []string{"missed 1", "missed 2"} {
		if _, err := rc.Publish(ctx, "story:published", p); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "6 events relayed", func() bool { return r.Stats().EventsRelayed == 6 })
	c = mustDial(t, r.addr, DefaultPath, map[string]string{"Last-Event-ID": "4"})
	expectEvents(t, c, wantEvent{"story-published", "5", "missed 1"}, wantEvent{"story-published", "6", "missed 2"})
	waitConnections(t, r, 1)
	if _, err := rc.Publish(ctx, "news:x", "live"); err != nil {
		t.Fatal(err)
	}
	expectEvents(t, c, wantEvent{"news-x", "7", "live"})

	st := r.Stats()
	if st.EventsRelayed != 7 || st.PerChannel["story:published"] != 4 || st.PerChannel["news:today"] != 1 {
		t.Errorf("stats: got %+v, want 7 relayed, story:published 4, news:today 1", st)
	}
	if !strings.Contains(r.logs.String(), "state=subscribed") {
		t.Errorf("log lacks the redis subscribed state:\n%s", r.logs.String())
	}
}

func healthz(t *testing.T, addr string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRedisRestart: /healthz says 503 while the subscription is down and
// 200 again once redisx has resubscribed; the open SSE stream survives and
// ids continue.
func TestRedisRestart(t *testing.T) {
	srv := redistest.Start(t)
	r := startRelay(t, Config{History: 100})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rc, err := redisx.Open(ctx, redisx.Options{URLs: []string{srv.URL()}})
	if err != nil {
		t.Fatalf("open redis: %v", err)
	}
	defer rc.Close()
	sub, err := rc.Subscribe(ctx, redisx.Subscription{Channels: []string{"c"}}, r)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	defer func() { cancel(); <-sub.Done() }()
	c := mustDial(t, r.addr, DefaultPath, nil)
	waitConnections(t, r, 1)
	waitFor(t, "/healthz 200", func() bool { code, _ := healthz(t, r.addr); return code == 200 })
	if _, err := rc.Publish(ctx, "c", "before"); err != nil {
		t.Fatal(err)
	}
	expectEvents(t, c, wantEvent{"c", "1", "before"})

	srv.Kill()
	waitFor(t, "/healthz 503", func() bool { code, _ := healthz(t, r.addr); return code == 503 })
	if _, body := healthz(t, r.addr); !strings.HasPrefix(body, "redis subscription ") {
		t.Errorf("/healthz body while redis is down: got %q, want it to name the subscription state", body)
	}
	if st := r.Stats().RedisState; st == "subscribed" {
		t.Errorf("/stats redis_state while redis is down: got %q", st)
	}
	srv.Restart()
	deadline := time.Now().Add(30 * time.Second)
	for code, body := healthz(t, r.addr); code != 200; code, body = healthz(t, r.addr) {
		if time.Now().After(deadline) {
			t.Fatalf("/healthz after the restart: still %d %q after 30s", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := rc.Publish(ctx, "c", "after"); err != nil {
		t.Fatal(err)
	}
	expectEvents(t, c, wantEvent{"c", "2", "after"})
	if st := r.Stats(); st.RedisGaps != 1 || st.RedisReconnects != 1 || st.RedisState != "subscribed" {
		t.Errorf("stats after one restart: got gaps %d, reconnects %d, state %q; want 1, 1, subscribed", st.RedisGaps, st.RedisReconnects, st.RedisState)
	}
}

// TestRedisClosingTheSubscriptionIsAGap: when Redis itself closes the
// subscription (as it does at client-output-buffer-limit; here CLIENT
// KILL), what it dropped never reaches the relay, so ingest_dropped stays
// 0; /stats shows the gap and the reconnect instead.
func TestRedisClosingTheSubscriptionIsAGap(t *testing.T) {
	r := startRelay(t, Config{History: 10})
	srv := redistest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rc, err := redisx.Open(ctx, redisx.Options{URLs: []string{srv.URL()}})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	sub, err := rc.Subscribe(ctx, redisx.Subscription{Channels: []string{"c"}}, r)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); <-sub.Done() }()
	waitFor(t, "subscribed", func() bool { return r.Stats().RedisState == "subscribed" })
	srv.CLI("CLIENT", "KILL", "TYPE", "pubsub")
	waitFor(t, "a gap and a reconnect", func() bool {
		st := r.Stats()
		return st.RedisGaps == 1 && st.RedisReconnects == 1 && st.RedisState == "subscribed"
	})
	if st := r.Stats(); st.IngestDropped != 0 {
		t.Errorf("ingest_dropped: got %d, want 0 (the relay itself dropped nothing)", st.IngestDropped)
	}
}

// feedFromRedis subscribes r to channels on a fresh redis-server and
// returns a client to publish with; both end with the test.
func feedFromRedis(t *testing.T, r *testRelay, channels ...string) (context.Context, *redisx.Client) {
	t.Helper()
	srv := redistest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	rc, err := redisx.Open(ctx, redisx.Options{URLs: []string{srv.URL()}})
	if err != nil {
		cancel()
		t.Fatalf("open redis: %v", err)
	}
	sub, err := rc.Subscribe(ctx, redisx.Subscription{Channels: channels}, r)
	if err != nil {
		cancel()
		rc.Close()
		t.Fatalf("subscribe: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		<-sub.Done()
		rc.Close()
	})
	return ctx, rc
}
