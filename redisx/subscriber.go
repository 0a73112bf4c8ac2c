package redisx

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fanscope/fanscope/feed"
)

// Subscription names what to subscribe to.
type Subscription struct {
	Channels      []string // SUBSCRIBE
	Patterns      []string // PSUBSCRIBE
	ShardChannels []string // SSUBSCRIBE (Redis 7+)
}

func (s Subscription) empty() bool {
	return len(s.Channels)+len(s.Patterns)+len(s.ShardChannels) == 0
}

func (s Subscription) normalized() Subscription {
	return Subscription{
		Channels:      uniq(s.Channels),
		Patterns:      uniq(s.Patterns),
		ShardChannels: uniq(s.ShardChannels),
	}
}

func uniq(in []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func (s Subscription) describe() string {
	var parts []string
	add := func(what string, names []string) {
		if len(names) == 1 {
			parts = append(parts, what+" "+names[0])
		} else if len(names) > 1 {
			parts = append(parts, what+"s "+strings.Join(names, ", "))
		}
	}
	add("channel", s.Channels)
	add("pattern", s.Patterns)
	add("shard channel", s.ShardChannels)
	return strings.Join(parts, "; ")
}

// SubscriberStats is a copy of a Subscriber's counters.
type SubscriberStats struct {
	State       string        // the worst state over the subscription connections
	Conns       int           // subscription connections (one, or several in a Cluster)
	Messages    uint64        // messages received
	Bytes       uint64        // payload bytes received
	Reconnects  int           // successful resubscriptions after a loss
	Gaps        int           // periods without a subscription (messages in them may be lost)
	GapTime     time.Duration // total time spent in gaps, including a gap still open
	PingRTT     time.Duration // last PING round trip on a subscription connection
	LastMessage time.Time     // receive time of the last message
	LastPing    time.Time     // when the last PING reply arrived
}

// Subscriber holds subscriptions open until its context ends, healing
// them after failures and reporting every change as a state record.
type Subscriber struct {
	c     *Client
	sink  feed.Sink
	links []*link
	done  chan struct{}

	messages   atomic.Uint64
	bytes      atomic.Uint64
	reconnects atomic.Int64
	gaps       atomic.Int64
	gapNanos   atomic.Int64
	rtt        atomic.Int64
	lastMsg    atomic.Int64 // unix nanoseconds
	lastPong   atomic.Int64 // unix nanoseconds
}

// link is one subscription connection and what it carries: the classic
// channels and patterns, or shard channels (one slot's worth in a Cluster,
// since one SSUBSCRIBE connection serves a single slot there).
type link struct {
	s       *Subscriber
	sub     Subscription
	shard   bool
	resolve func(ctx context.Context) (endpoint, error)
	kick    chan string // asks the connection to rebuild, with the reason

	mu      sync.Mutex
	state   string
	target  string
	hint    string       // a node named by a MOVED reply, tried next
	downAt  time.Time    // start of the open gap, zero when subscribed
	pinging atomic.Int64 // when the outstanding PING was sent (monoNow), 0 if none
	reading atomic.Bool  // the reader is waiting on the connection, not busy delivering
}

// subConn is one live subscription connection.
type subConn struct {
	rc  *redis.Client
	ps  *redis.PubSub
	act *activity
	ep  endpoint
	// confirmed holds "kind name" for every confirmed subscription, so a
	// repeated confirmation (the driver resubscribed by itself) is noticed.
	confirmed map[string]bool
}

func (sc *subConn) close() {
	_ = sc.ps.Close()
	_ = sc.rc.Close()
}

const pingPayload = "fanscope-watchdog"

// Subscribe subscribes and returns once every subscription is confirmed,
// so a NOPERM or an authentication failure is returned here. A goroutine
// then delivers records to sink until ctx ends: messages stamped right
// after the read returned, and state records (connecting, subscribed,
// disconnected, reconnecting) for every change.
func (c *Client) Subscribe(ctx context.Context, sub Subscription, sink feed.Sink) (*Subscriber, error) {
	sub = sub.normalized()
	if sub.empty() {
		return nil, usageError(c.mask, "nothing to subscribe to: give a channel, a pattern or a shard channel")
	}
	s := &Subscriber{c: c, sink: sink, done: make(chan struct{})}
	links, err := c.plan(ctx, sub)
	if err != nil {
		return nil, err
	}
	for _, l := range links {
		l.s = s
		l.kick = make(chan string, 1)
	}
	s.links = links

	conns := make([]*subConn, len(links))
	for i, l := range links {
		sc, err := l.connect(ctx, 0)
		for tries := 0; err != nil && tries < 3; tries++ {
			if _, moved := movedTo(err); !moved {
				break
			}
			sc, err = l.connect(ctx, 0)
		}
		if err != nil {
			for _, done := range conns[:i] {
				done.close()
			}
			l.setState(feed.StateFailed, "", err.Error(), 0)
			return nil, err
		}
		conns[i] = sc
	}
	for i, l := range links {
		l.setState(feed.StateSubscribed, conns[i].ep.String(), "", 0)
	}
	c.mu.Lock()
	c.subs = append(c.subs, s)
	c.mu.Unlock()

	var wg sync.WaitGroup
	for i, l := range links {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.run(ctx, conns[i])
		}()
	}
	go func() {
		wg.Wait()
		c.mu.Lock()
		c.subs = slices.DeleteFunc(c.subs, func(x *Subscriber) bool { return x == s })
		c.mu.Unlock()
		close(s.done)
	}()
	return s, nil
}

// plan splits a subscription into connections. A single server or a
// Sentinel primary gets one connection for channels and patterns and one
// for shard channels (messages on it are marked Shard).
func (c *Client) plan(ctx context.Context, sub Subscription) ([]*link, error) {
	if c.mode == modeCluster {
		return c.planCluster(ctx, sub)
	}
	resolve := func(ctx context.Context) (endpoint, error) { return c.base, nil }
	if c.mode == modeSentinel {
		resolve = c.sentinel.resolve
	}
	var links []*link
	if len(sub.Channels)+len(sub.Patterns) > 0 {
		links = append(links, &link{sub: Subscription{Channels: sub.Channels, Patterns: sub.Patterns}, resolve: resolve})
	}
	if len(sub.ShardChannels) > 0 {
		links = append(links, &link{sub: Subscription{ShardChannels: sub.ShardChannels}, shard: true, resolve: resolve})
	}
	return links, nil
}

// Done is closed when every subscription goroutine has ended (after ctx).
func (s *Subscriber) Done() <-chan struct{} { return s.done }

// Stats returns a copy of the counters.
func (s *Subscriber) Stats() SubscriberStats {
	st := SubscriberStats{
		Conns:      len(s.links),
		Messages:   s.messages.Load(),
		Bytes:      s.bytes.Load(),
		Reconnects: int(s.reconnects.Load()),
		Gaps:       int(s.gaps.Load()),
		GapTime:    time.Duration(s.gapNanos.Load()),
		PingRTT:    time.Duration(s.rtt.Load()),
	}
	if n := s.lastMsg.Load(); n != 0 {
		st.LastMessage = time.Unix(0, n)
	}
	if n := s.lastPong.Load(); n != 0 {
		st.LastPing = time.Unix(0, n)
	}
	rank := map[string]int{feed.StateSubscribed: 0, feed.StateConnecting: 1, feed.StateReconnecting: 2,
		feed.StateDisconnected: 3, feed.StateFailed: 4}
	st.State = feed.StateSubscribed
	for _, l := range s.links {
		l.mu.Lock()
		state := l.state
		if !l.downAt.IsZero() {
			st.GapTime += time.Since(l.downAt)
		}
		l.mu.Unlock()
		if rank[state] > rank[st.State] {
			st.State = state
		}
	}
	select {
	case <-s.done:
		st.State = feed.StateDisconnected
	default:
	}
	return st
}

// setState records and emits a state change.
func (l *link) setState(state, target, msg string, attempt int) {
	l.mu.Lock()
	l.state = state
	if target != "" {
		l.target = target
	}
	target = l.target
	l.mu.Unlock()
	l.s.sink.Emit(feed.Record{
		TS:      time.Now(),
		Source:  feed.SourceRedis,
		Kind:    feed.KindState,
		Target:  target,
		State:   state,
		Error:   msg,
		Attempt: attempt,
	})
}

// connect resolves the node, subscribes and reads every confirmation.
// attempt is 0 for the first connection and counts reconnect attempts.
func (l *link) connect(ctx context.Context, attempt int) (*subConn, error) {
	c := l.s.c
	select {
	case <-l.kick: // a failover announced before this resolve is handled by it
	default:
	}
	l.mu.Lock()
	hint := l.hint
	l.hint = ""
	l.mu.Unlock()
	var ep endpoint
	var err error
	if hint != "" {
		ep = c.base.withAddr(hint)
	} else if ep, err = l.resolve(ctx); err != nil {
		return nil, err
	}
	if attempt == 0 {
		l.setState(feed.StateConnecting, ep.String(), "", 0)
	} else {
		l.mu.Lock()
		l.target = ep.String()
		l.mu.Unlock()
	}
	what := fmt.Sprintf("subscribe to %s on %s", l.sub.describe(), ep.String())
	act := &activity{}
	rc := redis.NewClient(c.nodeOptions(ep, act, true))
	ps := rc.Subscribe(ctx)
	sc := &subConn{rc: rc, ps: ps, act: act, ep: ep, confirmed: map[string]bool{}}

	cctx, cancel := context.WithTimeout(ctx, c.o.DialTimeout+c.o.PongTimeout)
	defer cancel()
	want := map[string]bool{}
	send := func(kind string, names []string, f func(context.Context, ...string) error) error {
		if len(names) == 0 {
			return nil
		}
		for _, n := range names {
			want[kind+" "+n] = true
		}
		return f(cctx, names...)
	}
	err = send("subscribe", l.sub.Channels, ps.Subscribe)
	if err == nil {
		err = send("psubscribe", l.sub.Patterns, ps.PSubscribe)
	}
	if err == nil {
		err = send("ssubscribe", l.sub.ShardChannels, ps.SSubscribe)
	}
	for err == nil && len(want) > 0 {
		var msg interface{}
		msg, err = ps.ReceiveTimeout(cctx, c.o.DialTimeout+c.o.PongTimeout)
		now := time.Now()
		if err != nil {
			break
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			key := m.Kind + " " + m.Channel
			if want[key] {
				delete(want, key)
				sc.confirmed[key] = true
			}
		case *redis.Message:
			l.deliver(m, now)
		}
	}
	if err != nil {
		sc.close()
		if ctx.Err() != nil {
			// Still an *Error (wrapping ErrUnreachable), and errors.Is
			// finds context.Canceled or DeadlineExceeded in it.
			return nil, wrapErr(c.mask, what, ctx.Err())
		}
		if addr, ok := movedTo(err); ok {
			// Our view of the cluster was stale: go where the server says.
			l.mu.Lock()
			l.hint = addr
			l.mu.Unlock()
		}
		return nil, wrapErr(c.mask, what, err)
	}
	return sc, nil
}

func (l *link) deliver(m *redis.Message, now time.Time) {
	s := l.s
	s.sink.Emit(feed.Record{
		TS:      now,
		Source:  feed.SourceRedis,
		Kind:    feed.KindMessage,
		Channel: m.Channel,
		Pattern: m.Pattern,
		Shard:   l.shard,
		Data:    m.Payload,
	})
	s.messages.Add(1)
	s.bytes.Add(uint64(len(m.Payload)))
	s.lastMsg.Store(now.UnixNano())
}

const gapWarning = "messages published during the gap may be lost"

// run serves the connection and rebuilds it after every failure until ctx
// ends.
func (l *link) run(ctx context.Context, sc *subConn) {
	for {
		reason := l.serve(ctx, sc)
		sc.close()
		prev := sc.ep
		if ctx.Err() != nil {
			l.setState(feed.StateDisconnected, "", "", 0)
			return
		}
		down := time.Now()
		l.mu.Lock()
		l.downAt = down
		l.mu.Unlock()
		l.s.gaps.Add(1)
		l.setState(feed.StateDisconnected, "", reason+"; "+gapWarning, 0)
		sc = l.reconnect(ctx, reason)
		gap := time.Since(down)
		l.mu.Lock()
		l.downAt = time.Time{}
		l.mu.Unlock()
		l.s.gapNanos.Add(int64(gap))
		if sc == nil {
			l.setState(feed.StateDisconnected, "", "", 0)
			return
		}
		l.s.reconnects.Add(1)
		where := ""
		if sc.ep.addr != prev.addr {
			where = " on " + sc.ep.addr + " (was " + prev.addr + ")"
		}
		l.setState(feed.StateSubscribed, sc.ep.String(),
			fmt.Sprintf("resubscribed%s after a %s gap; %s", where, gap.Round(time.Millisecond), gapWarning), 0)
	}
}

// reconnect tries until it succeeds or ctx ends, with a capped backoff.
func (l *link) reconnect(ctx context.Context, reason string) *subConn {
	c := l.s.c
	last := reason
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		l.setState(feed.StateReconnecting, "", last, attempt)
		sc, err := l.connect(ctx, attempt)
		if err == nil {
			return sc
		}
		if ctx.Err() != nil {
			return nil
		}
		last = err.Error()
		if attempt == 1 {
			// The first retry is immediate: a restarted server is often back already.
			continue
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(backoff*2, c.o.MaxBackoff)
	}
}

// serve reads until the connection fails, the watchdog gives up on it, or
// ctx ends; it returns why it stopped.
func (l *link) serve(ctx context.Context, sc *subConn) string {
	wctx, stop := context.WithCancel(ctx)
	dead := make(chan string, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.watchdog(wctx, sc, dead)
	}()
	defer func() {
		stop()
		wg.Wait()
	}()
	s := l.s
	for {
		// No read deadline: a deadline that fires in the middle of a large
		// message would leave the reader out of step with the stream. The
		// watchdog decides liveness from bytes arriving instead and closes
		// the connection to end this read.
		l.reading.Store(true)
		msg, err := sc.ps.ReceiveTimeout(ctx, 0)
		now := time.Now()
		l.reading.Store(false)
		sc.act.touchAt(now) // progress, even when the bytes came from the read buffer
		if err != nil {
			if ctx.Err() != nil {
				return ""
			}
			// The watchdog leaves its reason before it closes the connection.
			select {
			case reason := <-dead:
				return reason
			default:
			}
			return "connection lost: " + s.c.mask.mask(shortErr(err))
		}
		switch m := msg.(type) {
		case *redis.Message:
			l.deliver(m, now)
		case *redis.Pong:
			if m.Payload == pingPayload {
				if sent := l.pinging.Swap(0); sent != 0 {
					s.rtt.Store(monoNow() - sent)
					s.lastPong.Store(now.UnixNano())
				}
			}
		case *redis.Subscription:
			key := m.Kind + " " + m.Channel
			switch m.Kind {
			case "subscribe", "psubscribe", "ssubscribe":
				if sc.confirmed[key] {
					// The driver reconnected and resubscribed on its own.
					s.gaps.Add(1)
					s.reconnects.Add(1)
					l.setState(feed.StateSubscribed, "", "connection was re-established by the driver; "+gapWarning, 0)
				}
				sc.confirmed[key] = true
			case "sunsubscribe":
				return fmt.Sprintf("the server ended the subscription to shard channel %s (its slot moved to another node); resubscribing where it lives now", m.Channel)
			case "unsubscribe", "punsubscribe":
				return fmt.Sprintf("the server ended the subscription to %s", m.Channel)
			}
		}
	}
}

// watchdog sends PING when the connection has been quiet for PingIdle
// and every RTTInterval, and closes the connection when no byte at all
// arrives for PongTimeout after a PING: a frozen server (SIGSTOP) or a
// dead network never shows up as a read error.
//
// Silence is counted in watchdog ticks, each worth at most two tick
// intervals, and only while the reader is waiting on the socket: when this
// process itself stalls (GC, an overloaded machine, a slow sink) the clock
// moves but no evidence against the server accumulates.
func (l *link) watchdog(ctx context.Context, sc *subConn, dead chan<- string) {
	o := l.s.c.o
	tick := max(min(o.PingIdle, o.PongTimeout)/4, 10*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	l.pinging.Store(0)
	lastSample := time.Time{} // sample the round trip right away
	lastTick := time.Now()
	lastAct := sc.act.last.Load()
	var quiet, sincePing time.Duration
	give := func(reason string) {
		select {
		case dead <- reason:
		default:
		}
		_ = sc.ps.Close()
	}
	for {
		select {
		case <-ctx.Done():
			_ = sc.ps.Close()
			return
		case reason := <-l.kick:
			give(reason)
			return
		case <-t.C:
		}
		now := time.Now()
		step := min(now.Sub(lastTick), 2*tick)
		lastTick = now
		if a := sc.act.last.Load(); a != lastAct || !l.reading.Load() {
			lastAct, quiet = a, 0
		} else {
			quiet += step
		}
		if l.pinging.Load() != 0 {
			sincePing += step
			if sincePing > o.PongTimeout && quiet > o.PongTimeout {
				give(fmt.Sprintf("no reply to PING within %s (server frozen, overloaded or network down)", o.PongTimeout))
				return
			}
			continue
		}
		if quiet >= o.PingIdle || now.Sub(lastSample) >= o.RTTInterval {
			lastSample, sincePing = now, 0
			l.pinging.Store(monoNow())
			if err := sc.ps.Ping(ctx, pingPayload); err != nil {
				if ctx.Err() != nil {
					_ = sc.ps.Close()
					return
				}
				give("send PING: " + l.s.c.mask.mask(shortErr(err)))
				return
			}
		}
	}
}

func shortErr(err error) string {
	if errors.Is(err, context.Canceled) {
		return "canceled"
	}
	_, reason, _ := classify(err)
	return reason
}
