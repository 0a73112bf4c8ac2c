package redisx

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/redistest"
)

// BenchmarkSubscriberIngest measures how many 100-byte messages a
// subscription absorbs per second when they are flooded pipelined (the
// sink only counts). Compare with go-redis's bare ReceiveTimeout loop (about 1.4 µs and 9
// allocations per message).
func BenchmarkSubscriberIngest(b *testing.B) {
	s := redistest.Start(b)
	ctx := context.Background()
	c, err := Open(ctx, Options{URLs: []string{s.URL()}})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var got atomic.Int64
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if _, err := c.Subscribe(sctx, Subscription{Channels: []string{"bench"}}, feed.SinkFunc(func(r feed.Record) {
		if r.Kind == feed.KindMessage {
			got.Add(1)
		}
	})); err != nil {
		b.Fatal(err)
	}
	rc := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer rc.Close()
	payload := strings.Repeat("x", 100)
	b.SetBytes(100)
	b.ResetTimer()
	start := time.Now()
	for sent := 0; sent < b.N; {
		pipe := rc.Pipeline()
		n := min(1000, b.N-sent)
		for i := 0; i < n; i++ {
			pipe.Publish(ctx, "bench", payload)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
		sent += n
	}
	for got.Load() < int64(b.N) {
		if time.Since(start) > time.Minute {
			b.Fatalf("got %d of %d messages", got.Load(), b.N)
		}
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msg/s")
}
