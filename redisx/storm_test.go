package redisx

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanscope/fanscope/feed"
	"github.com/fanscope/fanscope/internal/feedtest"
	"github.com/fanscope/fanscope/internal/redistest"
)

func TestBackoff(t *testing.T) {
	b := backoff{floor: 100 * time.Millisecond, max: time.Second}
	var prev time.Duration
	for i := 0; i < 12; i++ {
		d := b.next()
		base := min(100*time.Millisecond<<i, time.Second)
		if d < b.floor || d < base*8/10 || d > base*12/10 {
			t.Errorf("wait %d: got %s, want %s ±20%% and at least the floor", i, d, base)
		}
		if i > 0 && i < 3 && d <= prev*8/10 {
			t.Errorf("wait %d: got %s after %s, want it to grow", i, d, prev)
		}
		prev = d
	}
	b.reset()
	if d := b.next(); d > 120*time.Millisecond {
		t.Errorf("after reset: got %s, want the floor again", d)
	}
	// Jitter: many waits are not all the same.
	seen := map[time.Duration]bool{}
	for i := 0; i < 20; i++ {
		b.reset()
		seen[b.next()] = true
	}
	if len(seen) < 5 {
		t.Errorf("got %d distinct first waits in 20, want jitter", len(seen))
	}
}

// junkServer confirms every SUBSCRIBE, then sends bytes that are not
// RESP, and counts the connections it got.
func junkServer(t *testing.T) (addr string, conns *atomic.Int64) {
	t.Helper()
	conns = new(atomic.Int64)
	addr = feedtest.ServeTCP(t, func(conn net.Conn) {
		conns.Add(1)
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		r := bufio.NewReader(conn)
		// Answer each command of the handshake: +OK to CLIENT SETNAME, a
		// confirmation to SUBSCRIBE, then junk.
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if !strings.HasPrefix(line, "*") {
				continue
			}
			var n int
			fmt.Sscanf(line, "*%d", &n)
			var args []string
			for i := 0; i < n; i++ {
				_, _ = r.ReadString('\n') // $len
				arg, _ := r.ReadString('\n')
				args = append(args, strings.TrimSpace(arg))
			}
			switch strings.ToUpper(args[0]) {
			case "CLIENT":
				fmt.Fprint(conn, "+OK\r\n")
			case "SUBSCRIBE":
				fmt.Fprintf(conn, "*3\r\n$9\r\nsubscribe\r\n$%d\r\n%s\r\n:1\r\n", len(args[1]), args[1])
				fmt.Fprint(conn, "?this is not RESP\r\n")
				_, _ = r.ReadString('\n') // hold until the client goes
				return
			default:
				fmt.Fprint(conn, "-ERR unknown command\r\n")
			}
		}
	})
	return addr, conns
}

// A server that confirms SUBSCRIBE and then sends junk meets a growing,
// jittered wait, not a resubscription per round trip.
func TestJunkAfterSubscribeNoStorm(t *testing.T) {
	addr, conns := junkServer(t)
	c, err := New(Options{URLs: []string{"redis://" + addr}, MaxBackoff: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sub, _ := c.NewSubscriber(Subscription{Channels: []string{"ch"}})
	col := newCollector()
	runSubscriber(t, sub, col)
	col.waitFor(t, 10*time.Second, "a protocol error reported", func(r []feed.Record) bool {
		for _, x := range r {
			if x.State == feed.StateDisconnected && strings.Contains(x.Error, "protocol error") {
				return true
			}
		}
		return false
	})
	start, n0 := time.Now(), conns.Load()
	time.Sleep(3 * time.Second)
	n := conns.Load() - n0
	rate := float64(n) / time.Since(start).Seconds()
	t.Logf("%d connections in 3s after the first junk (%.1f/s); states:\n%s", n, rate, describe(col.states()))
	// 100 ms doubling up to 2 s gives about 5 in 3 s; a storm gives thousands.
	if n > 12 {
		t.Errorf("got %d resubscriptions in 3s, want a backoff (at most 12)", n)
	}
	if n < 1 {
		t.Errorf("got no resubscription in 3s, want it to keep trying")
	}
	var announced bool
	for _, r := range col.states() {
		if r.State == feed.StateReconnecting && strings.Contains(r.Error, "next attempt in") {
			announced = true
		}
	}
	if !announced {
		t.Errorf("no reconnecting record says when the next attempt comes")
	}
}

func TestExplainLoss(t *testing.T) {
	limit := OutputBufferLimit{Available: true, Hard: 1 << 20, Soft: 1 << 20}
	tests := []struct {
		name       string
		ev         lossEvidence
		reason     string
		bufferLoss bool
	}{
		{"server gone", lossEvidence{backlog: 1 << 20}, "connection lost: the server closed the connection", false},
		{"counted by Redis 7.2+", lossEvidence{up: true, counted: true, before: 3, after: 4, limit: limit},
			"Redis closed fanscope's subscription at the output buffer limit: fanscope read too slowly (INFO client_output_buffer_limit_disconnections 3 -> 4; client-output-buffer-limit pubsub 1048576 1048576 0)", true},
		{"counter unchanged: not the limit, however far behind", lossEvidence{up: true, counted: true, before: 4, after: 4, backlog: 1 << 20},
			"CLIENT KILL or the timeout setting (not the output buffer limit", false},
		{"no counter, behind", lossEvidence{up: true, backlog: 200 << 10, limit: limit},
			"the server closed the connection while fanscope was behind (200 KiB were still queued to it): most likely Redis's output buffer limit (client-output-buffer-limit pubsub 1048576 1048576 0; Redis 7.2+ counts these", true},
		{"no counter, reading along", lossEvidence{up: true, backlog: 100},
			"still up: CLIENT KILL, the timeout setting, or the output buffer limit (client-output-buffer-limit pubsub) if fanscope fell behind", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reason, loss := explainLoss(tt.ev)
			if !strings.Contains(reason, tt.reason) {
				t.Errorf("got %q, want it to contain %q", reason, tt.reason)
			}
			if (loss == bufferLoss) != tt.bufferLoss {
				t.Errorf("got loss %q, want the output-buffer wording: %v", loss, tt.bufferLoss)
			}
		})
	}
}

// gateSink holds the first message in Emit until released, as a stuck
// consumer would, so that Redis's output buffer for fanscope fills.
type gateSink struct {
	*collector
	gate chan struct{}
	once sync.Once
	held chan struct{}
}

func (g *gateSink) Emit(r feed.Record) {
	if r.Kind == feed.KindMessage {
		g.once.Do(func() { close(g.held) })
		<-g.gate
	}
	g.collector.Emit(r)
}

// Redis cuts off fanscope's own subscription at the output buffer limit;
// the disconnect names it, with the limit, instead of blaming the gap.
func TestOwnSubscriptionOutputBufferKill(t *testing.T) {
	s := redistest.Start(t, "client-output-buffer-limit pubsub 1mb 1mb 0")
	c := open(t, fastOptions(s.URL()))
	sink := &gateSink{collector: newCollector(), gate: make(chan struct{}), held: make(chan struct{})}
	released := false
	release := func() {
		if !released {
			released = true
			close(sink.gate)
		}
	}
	defer release()
	subscribe(t, c, Subscription{Channels: []string{"flood"}}, sink)
	publish(t, c, "flood", "first")
	select {
	case <-sink.held:
	case <-time.After(5 * time.Second):
		t.Fatal("the first message never reached the sink")
	}
	payload := strings.Repeat("x", 64<<10)
	ctx := context.Background()
	for i := 0; ; i++ {
		if i == 1000 {
			t.Fatal("Redis did not cut off the stuck subscription after 1000 publishes of 64 KiB")
		}
		publish(t, c, "flood", payload)
		n, err := c.NumSub(ctx, "flood")
		if err != nil {
			t.Fatal(err)
		}
		if n["flood"] == 0 {
			break // Redis closed it
		}
	}
	release()
	sink.waitFor(t, 15*time.Second, "the disconnect", func(r []feed.Record) bool { return hasState(r, feed.StateDisconnected, 0) })
	var reason string
	for _, r := range sink.states() {
		if r.State == feed.StateDisconnected {
			reason = r.Error
			break
		}
	}
	t.Logf("disconnect: %s", reason)
	if !strings.Contains(reason, "output buffer limit") || !strings.Contains(reason, "client-output-buffer-limit pubsub 1048576 1048576 0") ||
		!strings.Contains(reason, "still held for fanscope") || strings.Contains(reason, gapWarning) {
		t.Errorf("got %q, want the output buffer kill named, the limit, and what it cost", reason)
	}
	sink.waitFor(t, 15*time.Second, "resubscribed", func(r []feed.Record) bool {
		n := 0
		for _, x := range r {
			if x.State == feed.StateSubscribed {
				n++
			}
		}
		return n == 2
	})
}

// A subscription killed while fanscope keeps up is not blamed on the
// output buffer.
func TestClientKillNotBlamedOnBuffer(t *testing.T) {
	s := redistest.Start(t)
	c := open(t, fastOptions(s.URL()))
	col := newCollector()
	subscribe(t, c, Subscription{Channels: []string{"ch"}}, col)
	publish(t, c, "ch", "one")
	col.waitFor(t, 5*time.Second, "the message", func(r []feed.Record) bool { return countMessages(r, "ch") == 1 })
	s.CLI("CLIENT", "KILL", "TYPE", "pubsub")
	col.waitFor(t, 10*time.Second, "resubscribed", func(r []feed.Record) bool {
		n := 0
		for _, x := range r {
			if x.State == feed.StateSubscribed {
				n++
			}
		}
		return n == 2
	})
	for _, r := range col.states() {
		if r.State == feed.StateDisconnected {
			if !strings.Contains(r.Error, "still up: CLIENT KILL") || !strings.HasSuffix(r.Error, gapWarning) {
				t.Errorf("got %q, want CLIENT KILL named first and the gap warning", r.Error)
			}
			break
		}
	}
}
