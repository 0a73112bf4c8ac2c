package redisx

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
)

// collector is a Sink that keeps every record for the test to inspect.
type collector struct {
	mu   sync.Mutex
	recs []feed.Record
}

func newCollector() *collector { return &collector{} }

func (c *collector) Emit(r feed.Record) {
	c.mu.Lock()
	c.recs = append(c.recs, r)
	c.mu.Unlock()
}

// batchCollector is a collector that takes batches too (a feed.BatchSink,
// as feed.Queue is) and remembers the largest.
type batchCollector struct {
	*collector
	largest int
}

func (c *batchCollector) EmitBatch(rs []feed.Record) {
	c.mu.Lock()
	c.recs = append(c.recs, rs...)
	c.largest = max(c.largest, len(rs))
	c.mu.Unlock()
	clear(rs) // the subscriber must not rely on the slice after the call
}

func (c *collector) snapshot() []feed.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]feed.Record(nil), c.recs...)
}

func (c *collector) messages() []feed.Record {
	var out []feed.Record
	for _, r := range c.snapshot() {
		if r.Kind == feed.KindMessage {
			out = append(out, r)
		}
	}
	return out
}

func (c *collector) states() []feed.Record {
	var out []feed.Record
	for _, r := range c.snapshot() {
		if r.Kind == feed.KindState {
			out = append(out, r)
		}
	}
	return out
}

// waitFor polls until cond holds for the records so far, or fails. cond
// sees the collector's own slice and must not keep it.
func (c *collector) waitFor(t *testing.T, timeout time.Duration, what string, cond func([]feed.Record) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c.mu.Lock()
		ok := cond(c.recs)
		c.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s; records:\n%s", timeout, what, describe(c.snapshot()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func countMessages(recs []feed.Record, channel string) int {
	n := 0
	for _, r := range recs {
		if r.Kind == feed.KindMessage && (channel == "" || r.Channel == channel) {
			n++
		}
	}
	return n
}

func hasState(recs []feed.Record, state string, after int) bool {
	for _, r := range recs[min(after, len(recs)):] {
		if r.Kind == feed.KindState && r.State == state {
			return true
		}
	}
	return false
}

func describe(recs []feed.Record) string {
	var b strings.Builder
	msgs := 0
	for _, r := range recs {
		if r.Kind == feed.KindMessage {
			msgs++
			continue
		}
		if msgs > 0 {
			fmt.Fprintf(&b, "  (%d messages)\n", msgs)
			msgs = 0
		}
		fmt.Fprintf(&b, "  %s state=%s attempt=%d target=%s error=%q\n",
			r.TS.Format("15:04:05.000"), r.State, r.Attempt, r.Target, r.Error)
	}
	if msgs > 0 {
		fmt.Fprintf(&b, "  (%d messages)\n", msgs)
	}
	return b.String()
}

// fastOptions make the watchdog and reconnects quick enough for tests.
func fastOptions(urls ...string) Options {
	return Options{URLs: urls, PingIdle: 300 * time.Millisecond, PongTimeout: time.Second, MaxBackoff: 500 * time.Millisecond}
}

func open(t *testing.T, o Options) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := Open(ctx, o)
	if err != nil {
		t.Fatalf("Open(%v): %v", o.URLs, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// subscribe subscribes with a context that ends with the test and waits for
// the Subscriber to finish at cleanup.
func subscribe(t *testing.T, c *Client, sub Subscription, sink feed.Sink) *Subscriber {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := c.Subscribe(ctx, sub, sink)
	if err != nil {
		cancel()
		t.Fatalf("Subscribe(%+v): %v", sub, err)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.Done():
		case <-time.After(10 * time.Second):
			t.Errorf("subscriber did not end within 10s of its context")
		}
	})
	return s
}

func publish(t *testing.T, c *Client, channel, payload string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := c.Publish(ctx, channel, payload)
	if err != nil {
		t.Fatalf("Publish(%s): %v", channel, err)
	}
	return n
}
